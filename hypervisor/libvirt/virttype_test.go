package libvirt

import (
	"os"
	"testing"
)

func TestModeAllowsRW(t *testing.T) {
	const kvmGID, qemuUID, qemuGID = 107, 64055, 64055
	tests := []struct {
		name string
		perm os.FileMode
		uid  int
		gids []int
		want bool
	}{
		{"root-only node, qemu user", 0o600, qemuUID, []int{qemuGID}, false},
		{"root-only node, root", 0o600, 0, nil, true},
		{"udev's 0660 root:kvm, user in kvm", 0o660, qemuUID, []int{qemuGID, kvmGID}, true},
		{"0660 root:kvm, user not in kvm", 0o660, qemuUID, []int{qemuGID}, false},
		{"0640 root:kvm, user in kvm", 0o640, qemuUID, []int{kvmGID}, false},
		{"world rw", 0o666, qemuUID, nil, true},
		{"group match decides, not other", 0o606, qemuUID, []int{kvmGID}, false},
	}
	for _, tt := range tests {
		if got := modeAllowsRW(tt.perm, 0, kvmGID, tt.uid, tt.gids); got != tt.want {
			t.Errorf("modeAllowsRW(%s): want %v, got %v", tt.name, tt.want, got)
		}
	}
	// Owner bits apply to the owner even when group bits would allow.
	if modeAllowsRW(0o060, qemuUID, kvmGID, qemuUID, []int{kvmGID}) {
		t.Error("modeAllowsRW(owner without owner bits): want false, got true")
	}
}

func TestParseDACLabel(t *testing.T) {
	uid, gid, err := parseDACLabel("+64055:+107")
	if err != nil || uid != 64055 || gid != 107 {
		t.Fatalf("parseDACLabel(+64055:+107): want 64055 107, got %d %d %v", uid, gid, err)
	}
	for _, bad := range []string{"", "64055", "+a:+1", "+1:+b", "root:kvm"} {
		if _, _, err := parseDACLabel(bad); err == nil {
			t.Errorf("parseDACLabel(%q): want an error, got nil", bad)
		}
	}
}

func TestIsLocalURI(t *testing.T) {
	for uri, want := range map[string]bool{
		"qemu:///system":         true,
		"qemu:///session":        true,
		"qemu+ssh://host/system": false,
		"qemu://host/system":     false,
		"qemu":                   false,
	} {
		if got := isLocalURI(uri); got != want {
			t.Errorf("isLocalURI(%q): want %v, got %v", uri, want, got)
		}
	}
}
