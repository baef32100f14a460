package sources

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A commit cannot make Drover read a huge blob, or a huge number of them, into memory:
// sizes and counts are checked before any content is read.
func TestGitFleetSizeLimits(t *testing.T) {
	requireGit(t)
	ctx := context.Background()
	small := "services:\n" + service("web")
	big := "# " + strings.Repeat("x", MaxFleetFileBytes) + "\n"
	nearMax := "services: []\n# " + strings.Repeat("x", MaxFleetFileBytes-100) + "\n"

	many := map[string]*string{}
	for i := 0; i <= MaxFleetFiles; i++ {
		many[fmt.Sprintf("fleet/f%03d.yaml", i)] = ptr("services: []\n")
	}
	total := map[string]*string{}
	for i := 0; i*(MaxFleetFileBytes-100) <= MaxFleetTotalBytes; i++ {
		total[fmt.Sprintf("fleet/f%d.yaml", i)] = ptr(nearMax)
	}
	tests := []struct {
		name  string
		files map[string]*string
		path  string
		want  []string
	}{
		{"oversize file", map[string]*string{"fleet.yaml": &big}, "fleet.yaml", []string{"fleet.yaml", fmt.Sprint(MaxFleetFileBytes)}},
		{"oversize file in a directory", map[string]*string{"fleet/a.yaml": &small, "fleet/huge.yaml": &big}, "fleet", []string{"fleet/huge.yaml", fmt.Sprint(MaxFleetFileBytes)}},
		{"too many files", many, "fleet", []string{"fleet", fmt.Sprint(MaxFleetFiles)}},
		{"too many bytes in all", total, "fleet", []string{"fleet", fmt.Sprint(MaxFleetTotalBytes)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRepo(t)
			// Large files that are not fleet files are not read, so they do not count.
			tt.files["fleet/notes.txt"] = &big
			commit := r.commit(t, tt.files)
			_, err := newGit(t, GitConfig{URL: r.dir, Path: tt.path}).Read(ctx)
			var revErr *RevisionError
			if !errors.As(err, &revErr) || revErr.Commit != commit {
				t.Fatalf("Read = %v, want a *RevisionError for %s", err, commit)
			}
			for _, s := range append(tt.want, commit[:12]) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if len(err.Error()) > 500 {
				t.Errorf("error is %d bytes long, want a short message", len(err.Error()))
			}
		})
	}

	t.Run("at the limits", func(t *testing.T) {
		r := newTestRepo(t)
		files := map[string]*string{"fleet/a.yaml": &small, "fleet/notes.txt": &big}
		for i := 0; i < 3; i++ {
			files[fmt.Sprintf("fleet/pad%d.yaml", i)] = &nearMax
		}
		r.commit(t, files)
		if _, err := newGit(t, GitConfig{URL: r.dir, Path: "fleet"}).Read(ctx); err != nil {
			t.Errorf("Read of files within the limits: %v", err)
		}
	})
}
