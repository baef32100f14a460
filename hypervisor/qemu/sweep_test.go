package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestClassifyEntry(t *testing.T) {
	tests := []struct {
		entry, name string
		kind        leftoverKind
	}{
		{"web-1", "web-1", vmEntry},
		{".create-web-1-12345", "web-1", halfCreated},
		{".create-web-3f2a91c0-x1-987", "web-3f2a91c0-x1", halfCreated},
		{".destroy-web-1-42", "web-1", halfDestroyed},
		{".create-web-1-", "", notLeftover},
		{".create-web-1-abc", "", notLeftover},
		{".create-12345", "", notLeftover},
		{".create-.x-1", "", notLeftover},
		{".destroyweb-1-1", "", notLeftover},
		{".hidden", "", notLeftover},
		{"a.b", "", notLeftover},
	}
	for _, tt := range tests {
		name, kind := classifyEntry(tt.entry)
		if name != tt.name || kind != tt.kind {
			t.Errorf("classifyEntry(%q): want %q %d, got %q %d", tt.entry, tt.name, tt.kind, name, kind)
		}
	}
}

// TestSweep plays Drovers killed mid-Create (after the temporary directory, before the
// rename) and mid-Destroy (after the mark, and after the rename), beside entries Sweep
// must leave alone.
func TestSweep(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	ctx := t.Context()
	old := time.Now().Add(-2 * sweepMinAge)
	age := func(t *testing.T, when time.Time, paths ...string) {
		t.Helper()
		for _, p := range paths {
			if err := os.Chtimes(p, when, when); err != nil {
				t.Fatal(err)
			}
		}
	}
	// halfCreate leaves what makeEntry has made just before its rename.
	halfCreate := func(t *testing.T, name string, when time.Time, extra ...string) string {
		t.Helper()
		dir, err := os.MkdirTemp(d.root, tempPrefix+name+"-")
		if err != nil {
			t.Fatal(err)
		}
		data, err := encodeRecord(record{Format: recordFormat, Name: name, Service: "web", SpecHash: "3f2a91c0aa",
			Created: time.Now(), NetworkMode: "user", HostPort: 40000, GuestPort: 8080})
		if err != nil {
			t.Fatal(err)
		}
		files := []string{filepath.Join(dir, "metadata.json")}
		if err := os.WriteFile(files[0], data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, e := range extra {
			files = append(files, filepath.Join(dir, e))
			if err := os.WriteFile(files[len(files)-1], []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		age(t, when, append(files, dir)...)
		return dir
	}
	// halfDestroy leaves what a Destroy killed after marking the entry leaves.
	halfDestroy := func(t *testing.T, name string, when time.Time) string {
		t.Helper()
		rec := fabricate(t, d, name, 40300, deadPid(t))
		rec.Destroying = true
		p := d.paths(name)
		if err := d.writeRecord(p, rec); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p.pid); err != nil {
			t.Fatal(err)
		}
		age(t, when, p.metadata, p.dir)
		return p.dir
	}

	createdKilled := halfCreate(t, "sw-created", old)
	createdKilledTmp := halfCreate(t, "sw-created2", old, ".metadata.json.tmp-123")
	destroyKilled := halfDestroy(t, "sw-destroyed", old)
	going, err := os.MkdirTemp(d.root, goingPrefix+"sw-going-")
	if err != nil {
		t.Fatal(err)
	}
	age(t, old, going)
	want := []string{createdKilled, createdKilledTmp, destroyKilled, going}

	keep := []string{
		halfCreate(t, "sw-young", time.Now()),                 // another process's Create, right now
		halfCreate(t, "sw-inflight", old),                     // this driver's Create, in flight
		halfCreate(t, "sw-stranger", old, "notes.txt"),        // holds something Drover never puts there
		halfDestroy(t, "sw-destroying", time.Now()),           // another process's Destroy, right now
		fabricate(t, d, "sw-crashed", 40301, deadPid(t)).Name, // a VM that died: the reconciler's call
	}
	keep[len(keep)-1] = filepath.Join(d.root, keep[len(keep)-1])
	for _, rel := range []string{"foreign/notes.txt", "bad-json/metadata.json", ".create-web-x/metadata.json", ".destroy-nope"} {
		p := filepath.Join(d.root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{not json"), 0o644); err != nil {
			t.Fatal(err)
		}
		age(t, old, p, filepath.Dir(p))
		keep = append(keep, p)
	}
	unlock := d.locks.Lock("sw-inflight")

	removed, err := d.Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	slices.Sort(want)
	slices.Sort(removed)
	if !slices.Equal(removed, want) {
		t.Errorf("Sweep removed:\nwant %q\ngot  %q", want, removed)
	}
	for _, p := range want {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Sweep: want %s gone, got %v", p, err)
		}
	}
	for _, p := range keep {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("after Sweep: want %s untouched, got %v", p, err)
		}
	}
	if got, _ := filepath.Glob(filepath.Join(d.root, goingPrefix+"sw-destroyed-*")); len(got) > 0 {
		t.Errorf("after Sweep finished a destroy: want nothing of it left, got %q", got)
	}
	vms, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, vm := range vms {
		if vm.Name == "sw-destroyed" {
			t.Errorf("List after Sweep: want the swept entry gone, got %+v", vm)
		}
	}

	unlock()
	removed, err = d.Sweep(ctx)
	if wantDir := keep[1]; err != nil || !slices.Equal(removed, []string{wantDir}) {
		t.Errorf("Sweep once the Create is no longer in flight: want [%s], got %q, %v", wantDir, removed, err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Sweep(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("Sweep with a canceled context: want context.Canceled, got %v", err)
	}
}

// A Destroy leaves nothing for Sweep, and an interrupted one is finished by the next
// Destroy as well as by Sweep.
func TestDestroyMarksThenRemoves(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	fabricate(t, d, "mark-1", 40400, deadPid(t))
	if err := d.Destroy(t.Context(), "mark-1"); err != nil {
		t.Fatal(err)
	}
	assertEmptyRoot(t, d)

	rec := fabricate(t, d, "mark-2", 40401, deadPid(t))
	rec.Destroying = true
	if err := d.writeRecord(d.paths("mark-2"), rec); err != nil {
		t.Fatal(err)
	}
	vms, err := d.List(t.Context())
	if err != nil || len(vms) != 1 || vms[0].Name != "mark-2" {
		t.Fatalf("List of an entry mid-destroy: want it listed for the next pass, got %+v, %v", vms, err)
	}
	if err := d.Destroy(t.Context(), "mark-2"); err != nil {
		t.Fatalf("Destroy of an entry mid-destroy: %v", err)
	}
	assertEmptyRoot(t, d)
}
