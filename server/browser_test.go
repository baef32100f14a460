package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

// browser starts a headless Chromium of its own (empty profile, no network
// services) and returns a context that drives one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		testenv.Unavailable(t, "chromium not installed (Debian package chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// outputDir is where screenshots go: $TEST_OUTPUT_DIR, else the test's artifact
// directory (kept with go test -artifacts). Never the repository.
func outputDir(t *testing.T) string {
	if d := os.Getenv("TEST_OUTPUT_DIR"); d != "" {
		d = filepath.Join(d, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(outputDir(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// waitText waits until sel's text contains want (the page updates itself; nothing
// here reloads it).
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	js := fmt.Sprintf(`(function(){ var e = document.querySelector(%q); return e ? e.textContent : "(no element)"; })()`, sel)
	for {
		got, err := chromedp.Run(wctx, chromedp.Evaluate[string](js))
		if err == nil && strings.Contains(got, want) {
			return
		}
		select {
		case <-wctx.Done():
			t.Fatalf("%s: text %q, want it to contain %q (err %v)", sel, got, want, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func evalString(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return s
}

// TestDashboardInBrowser: the fleet page renders in a real Chromium with hostile
// strings shown as text; a rollout's progress appears live, pushed by events and
// then by the page's own refresh; a failed rollout shows its reason; the service page
// shows its history as it grows. No reload anywhere.
func TestDashboardInBrowser(t *testing.T) {
	ctx := browser(t)
	f := newFixture(t, func(c *Config) { c.Now = time.Now })
	f.view.update(func(st *reconciler.FleetStatus) {
		for i := range st.Services {
			st.Services[i].Held, st.Services[i].Suspended = nil, nil
			st.Services[i].Phase = "converged"
			st.Services[i].Progress = reconciler.Progress{}
		}
		st.Services[2].Suspended = &reconciler.Suspended{Reason: hostileReason, At: time.Now()}
		st.Services[2].Phase = "suspended"
	})
	url := serveFixture(t, f)

	// The page renders; the hostile version and reason are text, not markup.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-service="web"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn.live`)),
	); err != nil {
		t.Fatalf("load /: %v", err)
	}
	f.view.waitSubscribers(t, 2) // Serve's Run and the page's stream
	waitText(t, ctx, `[data-service="db"] .version`, hostileVersion)
	waitText(t, ctx, `[data-service="db"] .suspended .reason`, hostileReason)
	if n := evalString(t, ctx, `String(document.querySelectorAll('img, main script').length)`); n != "0" {
		t.Errorf("hostile strings became %s elements", n)
	}
	if title := evalString(t, ctx, `document.title`); title == "pwned" {
		t.Errorf("a hostile reason ran script")
	}
	screenshot(t, ctx, "1-fleet")

	// A rollout starts: an event brings its progress bar, with no reload.
	evalString(t, ctx, `window.__noReload = "still here"; ""`)
	f.view.update(func(st *reconciler.FleetStatus) {
		st.Services[0].Version, st.Services[0].Phase = "1.5.0", "rolling-out"
		st.Services[0].Progress = reconciler.Progress{Passing: 0, Wanted: 2, Started: time.Now()}
	})
	f.view.publish(reconciler.Event{Kind: reconciler.EventRolloutStarted, Service: "web", Version: "1.5.0"})
	waitText(t, ctx, `[data-service="web"] .progress-text`, "0/2 new VMs passing")
	// VMs turn healthy (no event for that): the page's own refresh shows it.
	f.view.update(func(st *reconciler.FleetStatus) { st.Services[0].Progress.Passing = 1 })
	waitText(t, ctx, `[data-service="web"] .progress-text`, "1/2 new VMs passing")
	if v := evalString(t, ctx, `String(document.querySelector('[data-service="web"] progress').value)`); v != "1" {
		t.Errorf("progress bar value %s, want 1", v)
	}
	screenshot(t, ctx, "2-rollout-progress")

	// The rollout fails: its reason shows.
	const reason = "health gate: web-5d1c2b3a-q7 never passed within 2m0s (last probe: connection refused)"
	f.view.update(func(st *reconciler.FleetStatus) {
		st.Services[0].Phase, st.Services[0].Progress = "held", reconciler.Progress{}
		st.Services[0].Held = &reconciler.Hold{Revision: "ffeeddccbbaa99887766", Reason: reason, At: time.Now()}
	})
	f.view.publish(reconciler.Event{Kind: reconciler.EventRolloutFailed, Service: "web", Reason: reason})
	waitText(t, ctx, `[data-service="web"] .held .reason`, reason)
	if got := evalString(t, ctx, `window.__noReload || "reloaded"`); got != "still here" {
		t.Errorf("the page reloaded (window state lost: %q)", got)
	}
	screenshot(t, ctx, "3-rollout-failed")

	// The service page: its history, growing live.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url+"/services/web"),
		chromedp.WaitVisible(chromedp.CSS(`#conn.live`)),
	); err != nil {
		t.Fatalf("load /services/web: %v", err)
	}
	waitText(t, ctx, `.history`, "rollout_failed")
	f.view.publish(reconciler.Event{Kind: reconciler.EventRevisionReleased, Service: "web", Reason: "drover retry"})
	waitText(t, ctx, `.history tbody tr:first-child .kind`, "revision_released")
	screenshot(t, ctx, "4-service")

	// A phone-sized screen: nothing wider than the viewport but the scrolling tables.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-service="web"]`))); err != nil {
		t.Fatal(err)
	}
	if w := evalString(t, ctx, `String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("phone: page is %spx wide, want 390 (no sideways scrolling)", w)
	}
	screenshot(t, ctx, "5-phone")
}

// TestDashboardLoginInBrowser: with a token, a browser is sent to /login, logs in with
// the token, sees the fleet and its live updates through the read-only cookie, and
// cannot order with it.
func TestDashboardLoginInBrowser(t *testing.T) {
	ctx := browser(t)
	f := newFixture(t, func(c *Config) { c.Token = testToken; c.Now = time.Now })
	url := serveFixture(t, f)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), testToken),
		chromedp.Submit(chromedp.CSS(`#token`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-service="web"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn.live`)),
	); err != nil {
		t.Fatalf("log in: %v", err)
	}
	f.view.update(func(st *reconciler.FleetStatus) {
		st.Services[0].Suspended = &reconciler.Suspended{Reason: "seen through the cookie", At: time.Now()}
		st.Services[0].Phase = "suspended"
	})
	f.view.publish(reconciler.Event{Kind: reconciler.EventSuspended, Service: "web"})
	waitText(t, ctx, `[data-service="web"] .suspended .reason`, "seen through the cookie")
	// The page's own script, with the cookie, cannot order.
	code, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch('/api/v1/reconcile', {method: 'POST'}).then(r => String(r.status))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if code != "403" || len(f.ctl.got()) != 0 {
		t.Errorf("POST from the logged-in page: %s, orders %q; want 403 and none", code, f.ctl.got())
	}
	screenshot(t, ctx, "login-fleet")
}
