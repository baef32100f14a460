package reconciler

import (
	"encoding/json"
	"testing"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// The user-data's content, the firmware and the disk size are part of the spec: a
// change replaces the VMs. A service using none of them keeps the hash it had before
// they existed, so upgrading Drover replaces nothing.
func TestSpecHashCoversDiskAndCloudInit(t *testing.T) {
	base := svc("a", "1", 1, 0)
	base.Image = sources.Image{Disk: &sources.Artifact{URL: "file:///d", SHA256: "d"}, Firmware: sources.FirmwareBIOS}
	withUD := func(content string) sources.Service {
		s := base
		s.CloudInit = &sources.CloudInit{UserData: "ud.yaml", Content: []byte(content)}
		return s
	}
	renamed := withUD("#cloud-config\n")
	renamed.CloudInit.UserData = "other.yaml"
	uefi, grown := base, base
	uefi.Image.Firmware = sources.FirmwareUEFI
	grown.Image.DiskSizeBytes = 10 << 30
	noFirmware := base
	noFirmware.Image.Firmware = ""

	h := SpecHash(base)
	for _, tt := range []struct {
		name string
		s    sources.Service
		same bool
	}{
		{"bios is the default", noFirmware, true},
		{"user-data added", withUD("#cloud-config\n"), false},
		{"user-data file renamed, same content", renamed, false},
		{"uefi", uefi, false},
		{"disk grown", grown, false},
	} {
		if got := SpecHash(tt.s) == h; got != tt.same {
			t.Errorf("%s: same hash %v, want %v", tt.name, got, tt.same)
		}
	}
	if SpecHash(withUD("#cloud-config\n")) != SpecHash(renamed) {
		t.Errorf("renaming the user-data file changed the hash; only its content should count")
	}
	if SpecHash(withUD("#cloud-config\n")) == SpecHash(withUD("#cloud-config\nruncmd: []\n")) {
		t.Errorf("changed user-data content kept the hash")
	}
	// The hash a kernel service had before disk boots existed (the new fields are
	// omitted when empty, so its identity's JSON is byte for byte what it was).
	if got, want := shortHash(SpecHash(svc("a", "1", 1, 0))), "de459b1f"; got != want {
		t.Errorf("kernel service hash %s, want %s: every running VM would be replaced", got, want)
	}
}

func TestWithSeed(t *testing.T) {
	s := svc("web", "1.2", 1, 0)
	spec := hypervisor.Spec{Name: "web-1234abcd-x1", Network: hypervisor.Network{Address: "198.18.0.10/24"},
		Meta: hypervisor.Metadata{Fleet: "f", Service: "web", Version: "1.2", Revision: "abc"}}
	if got := withSeed(s, spec); got.Seed != nil {
		t.Fatalf("service without cloud_init got a seed: %+v", got.Seed)
	}
	// Static addressing without cloud_init: the network-config still needs a seed.
	spec.Seed = &hypervisor.Seed{NetworkConfig: []byte("version: 2\n")}
	if got := withSeed(s, spec); got.Seed == nil || len(got.Seed.MetaData) == 0 || got.Seed.UserData != nil || string(got.Seed.NetworkConfig) != "version: 2\n" {
		t.Errorf("network-config only: seed %+v, want meta-data, no user-data and the network-config", got.Seed)
	}
	s.CloudInit = &sources.CloudInit{UserData: "ud", Content: []byte("#cloud-config\n")}
	got := withSeed(s, spec)
	var meta map[string]any
	if err := json.Unmarshal(got.Seed.MetaData, &meta); err != nil {
		t.Fatalf("meta-data %q: %v", got.Seed.MetaData, err)
	}
	want := map[string]any{
		"instance-id": "web-1234abcd-x1", "local-hostname": "web-1234abcd-x1",
		"drover": map[string]any{"fleet": "f", "service": "web", "version": "1.2", "revision": "abc", "address": "198.18.0.10"},
	}
	if a, b := mustJSON(meta), mustJSON(want); a != b {
		t.Errorf("meta-data:\n got %s\nwant %s", a, b)
	}
	if string(got.Seed.UserData) != "#cloud-config\n" || string(got.Seed.NetworkConfig) != "version: 2\n" {
		t.Errorf("seed user-data %q network-config %q", got.Seed.UserData, got.Seed.NetworkConfig)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
