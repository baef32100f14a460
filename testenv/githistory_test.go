package testenv

import (
	"strconv"
	"testing"
)

func TestHistoryRepo(t *testing.T) {
	t.Setenv("DROVER_TESTENV_CACHE", t.TempDir())
	src := HistoryRepo(t, 30, 30<<10, "services: []\n")
	if again := HistoryRepo(t, 30, 30<<10, "services: []\n"); again != src {
		t.Errorf("second HistoryRepo = %s, want the cached %s", again, src)
	}
	count := func(dir string) int {
		n, err := strconv.Atoi(Git(t, dir, nil, "rev-list", "--count", "main"))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(src); n != 30 {
		t.Errorf("history has %d commits, want 30", n)
	}
	if got := Git(t, src, nil, "show", "main:fleet.yaml"); got != "services: []" {
		t.Errorf("fleet.yaml at main = %q", got)
	}
	clone := CloneBare(t, src)
	sha := AppendCommit(t, clone, map[string]string{"fleet.yaml": "services: []\n# changed\n"}, "change")
	if n := count(clone); n != 31 || count(src) != 30 {
		t.Errorf("after AppendCommit to the clone: %d commits there, %d in the source; want 31 and 30", n, count(src))
	}
	if parent := Git(t, clone, nil, "rev-parse", sha+"^"); parent != Git(t, src, nil, "rev-parse", "main") {
		t.Errorf("the appended commit's parent is %s, want the source's head", parent)
	}
}
