package reconciler_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/cidata"
	"github.com/drover-dev/drover/testenv"
)

// debianUserData makes the guest serve /healthz with its hostname and the version
// Drover put in its seed's meta-data: both come from cloud-init (jinja over the
// NoCloud datasource), so the answer proves the seed reached real cloud-init.
const debianUserData = `## template: jinja
#cloud-config
write_files:
  - path: /srv/www/healthz
    content: |
      {{ v1.local_hostname }} {{ ds.meta_data.drover.version }}
runcmd:
  - [systemd-run, --unit=drover-healthz, /usr/bin/python3, -m, http.server, --directory, /srv/www, "8080"]
`

func debianFleet(img testenv.File, version string) string {
	return fmt.Sprintf(`services:
  - name: e2e-deb
    version: %q
    replicas: 1
    memory: 512MiB
    image:
      disk: {url: %q, sha256: %q}
      disk_size: 2GiB
    cloud_init:
      user_data: cloud/web.yaml
    port: 8080
    check: {http: /healthz, interval: 2s, timeout: 2s}
    update:
      healthy_deadline: 15m
      drain: 1s
      shutdown_timeout: 20s
`, version, img.URL(), img.SHA256)
}

// A real distribution image with real cloud-init, deployed from the fleet repository
// with jinja user-data on the direct driver: v1 serves its name and version, then v2
// replaces it blue-green, never below one passing.
func TestE2EDebianCloudInit(t *testing.T) {
	img := testenv.DebianImage(t)
	w := newWorld(t, "qemu")
	const svc = "e2e-deb"
	src := w.source(w.repo.URL())

	deploy := func(version string) (string, time.Duration) {
		t.Helper()
		rev := w.repo.Commit(t, map[string]string{"fleet.yaml": debianFleet(img, version), "cloud/web.yaml": debianUserData}, "v"+version)
		started := time.Now()
		if err := w.converge(src); err != nil {
			t.Fatalf("deploy v%s: %v", version, err)
		}
		return rev, time.Since(started)
	}

	rev1, took1 := deploy("1")
	w.expectServing(svc, "1", rev1, 1)
	v1 := w.vms(svc)
	checkHealthz(t, v1[0], "1")
	checkSeed(t, w, v1[0])
	t.Logf("v1: create to healthy in %v", took1.Round(time.Second))

	watch := w.watchPassing(svc)
	rev2, took2 := deploy("2")
	watch.stop()
	w.expectServing(svc, "2", rev2, 1)
	v2 := w.vms(svc)
	checkHealthz(t, v2[0], "2")
	w.expectNoTrace([]string{v1[0].Name})
	if watch.min.Load() < 1 {
		t.Errorf("watcher: min passing %d over %d samples; want 1 throughout", watch.min.Load(), watch.samples.Load())
	}
	t.Logf("v2: blue-green in %v, watcher %d samples, min passing %d", took2.Round(time.Second), watch.samples.Load(), watch.min.Load())
}

// checkHealthz asks the guest's /healthz for what cloud-init wrote.
func checkHealthz(t *testing.T, vm hypervisor.VM, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d/healthz", vm.Address, vm.Port), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /healthz of %s: %v", vm.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if got, want := strings.TrimSpace(string(body)), vm.Name+" "+version; got != want {
		t.Errorf("/healthz of %s: got %q, want %q (hostname and ds.meta_data.drover.version)", vm.Name, got, want)
	}
}

// checkSeed reads the VM's seed as the driver wrote it: labelled cidata, meta-data
// naming the VM, the user-data from the repository.
func checkSeed(t *testing.T, w *world, vm hypervisor.VM) {
	t.Helper()
	p := w.stateDir + "/qemu/" + vm.Name + "/seed.iso"
	label, files, err := cidata.Read(p)
	if err != nil {
		t.Fatalf("read seed of %s: %v", vm.Name, err)
	}
	if label != cidata.Label || string(files["user-data"]) != debianUserData || !strings.Contains(string(files["meta-data"]), `"instance-id":"`+vm.Name+`"`) {
		t.Errorf("seed of %s: label %q, files %q", vm.Name, label, files)
	}
	if len(vm.Drift) != 0 {
		t.Errorf("vm %s reports drift %q, want none", vm.Name, vm.Drift)
	}
}
