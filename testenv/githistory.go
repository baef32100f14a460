package testenv

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// historyFiles is how many files the generated history spreads its changes over: the
// head's tree holds that many blobs, whatever the length of the history.
const historyFiles = 200

// HistoryRepo returns a bare repository whose branch main has commits commits and
// about historyBytes of history in all (incompressible blobs, so the bytes are real),
// with fleet at fleet.yaml from the first commit on. It is generated once with
// `git fast-import`, in seconds, and cached under CacheDir: treat it as read-only and
// CloneBare it to add commits. It skips the test (fails it in CI) without git.
func HistoryRepo(t testing.TB, commits int, historyBytes int64, fleet string) string {
	t.Helper()
	cache, err := CacheDir()
	if err != nil {
		t.Fatalf("history repository: %v", err)
	}
	key := sha256.Sum256(fmt.Appendf(nil, "v1 %d %d %s", commits, historyBytes, fleet))
	dir := filepath.Join(cache, "git-history", fmt.Sprintf("%d-commits-%s.git", commits, hex.EncodeToString(key[:6])))
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		return dir
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	Git(t, tmp, nil, "init", "-q", "--bare", "-b", "main")
	if err := fastImport(t, tmp, func(w io.Writer) error { return writeHistory(w, commits, historyBytes, fleet) }); err != nil {
		t.Fatalf("history repository: %v", err)
	}
	// Another test may have built it meanwhile: theirs is as good.
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(filepath.Join(dir, "HEAD")); statErr != nil {
			t.Fatalf("history repository: %v", err)
		}
	}
	return dir
}

// writeHistory writes the fast-import stream: commit i rewrites one of historyFiles
// files with fresh random bytes (the same on every run).
func writeHistory(w io.Writer, commits int, historyBytes int64, fleet string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	rnd := rand.New(rand.NewChaCha8([32]byte{'d', 'r', 'o', 'v', 'e', 'r'}))
	per := historyBytes / int64(commits)
	blob := make([]byte, per)
	for i := 1; i <= commits; i++ {
		msg := fmt.Sprintf("commit %d\n", i)
		fmt.Fprintf(bw, "commit refs/heads/main\nmark :%d\ncommitter Drover Test <test@drover.invalid> %d +0000\ndata %d\n%s", i, 1704067200+i, len(msg), msg)
		if i > 1 {
			fmt.Fprintf(bw, "from :%d\n", i-1)
		} else {
			fmt.Fprintf(bw, "M 100644 inline fleet.yaml\ndata %d\n%s\n", len(fleet), fleet)
		}
		for j := range blob {
			blob[j] = byte(rnd.Uint32())
		}
		f := i % historyFiles
		fmt.Fprintf(bw, "M 100644 inline data/d%02d/f%03d.bin\ndata %d\n", f%20, f, len(blob))
		bw.Write(blob)
		bw.WriteString("\n")
	}
	return bw.Flush()
}

// fastImport feeds a stream written by write to `git fast-import` in the bare
// repository dir.
func fastImport(t testing.TB, dir string, write func(io.Writer) error) error {
	cmd := exec.Command("git", "fast-import", "--quiet", "--done")
	cmd.Dir = dir
	cmd.Env = gitEnv()
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git fast-import: %w", err)
	}
	werr := write(in)
	if werr == nil {
		_, werr = io.WriteString(in, "done\n")
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %w: %s", err, stderr.String())
	}
	return werr
}

// CloneBare makes a bare clone of src that shares its objects (git clone --shared): a
// copy to add commits to without touching src, made in milliseconds.
func CloneBare(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	Git(t, "", nil, "clone", "-q", "--bare", "--shared", src, dst)
	return dst
}

// AppendCommit adds a commit to branch main of the bare repository dir, writing
// files (slash paths), and returns its SHA.
func AppendCommit(t testing.TB, dir string, files map[string]string, msg string) string {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	err := fastImport(t, dir, func(w io.Writer) error {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter Drover Test <test@drover.invalid> 1704067200 +0000\ndata %d\n%s\nfrom refs/heads/main^0\n", len(msg), msg)
		for _, name := range names {
			fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", name, len(files[name]), files[name])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("append commit to %s: %v", dir, err)
	}
	return Git(t, dir, nil, "rev-parse", "refs/heads/main")
}
