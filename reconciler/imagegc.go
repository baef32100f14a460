package reconciler

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/drover-dev/drover/sources"
)

// imageGCEvery spaces collections: a converged fleet passes every --interval, and the
// cache need not be listed that often.
const imageGCEvery = 10 * time.Minute

// imageGC is the image collector's state: when it last ran, and the fleets of the
// revisions running VMs were created from (a commit's fleet never changes).
type imageGC struct {
	mu        sync.Mutex
	last      time.Time
	revisions map[string]*sources.Fleet
}

// collectImages removes cached images that neither rev nor any VM's own revision
// uses, once they have been unused for ImageGCGrace. It runs after a pass that found the
// fleet converged, and never when it cannot tell what a running VM uses.
func (r *Reconciler) collectImages(ctx context.Context, log *slog.Logger, rev sources.Revision, obs Observed) {
	if r.cfg.ImageGC == nil || rev.Fleet == nil {
		return
	}
	now := r.cfg.Now()
	r.gc.mu.Lock()
	defer r.gc.mu.Unlock()
	if !r.gc.last.IsZero() && now.Sub(r.gc.last) < imageGCEvery {
		return
	}
	inUse := map[string]bool{}
	addFleet(inUse, rev.Fleet)
	for _, vm := range obs.VMs {
		if vm.Meta.Revision == "" || vm.Meta.Revision == rev.Commit {
			continue
		}
		f, ok := r.gc.revisions[vm.Meta.Revision]
		if !ok {
			if r.cfg.History == nil {
				log.Debug("image gc skipped: no history to read what a VM was created from", "vm", vm.Name)
				return
			}
			var err error
			if f, err = r.cfg.History.Fleet(ctx, vm.Meta.Revision); err != nil {
				// Collecting without it could remove the disk a running VM's overlay
				// is backed by.
				log.Warn("image gc skipped: cannot read the revision a VM was created from", "vm", vm.Name, "revision", shortRev(vm.Meta.Revision), "err", err)
				return
			}
			r.gc.revisions[vm.Meta.Revision] = f
		}
		if svc, ok := f.Service(vm.Meta.Service); ok {
			addService(inUse, svc)
		}
	}
	r.gc.last = now
	removed, err := r.cfg.ImageGC.Collect(ctx, func(digest string) bool { return inUse[digest] }, r.cfg.ImageGCGrace)
	if err != nil {
		log.Warn("image gc", "err", err)
	}
	for _, d := range removed {
		log.Info("removed cached image no VM or revision uses", "sha256", d, "grace", r.cfg.ImageGCGrace)
	}
	// Revisions no VM runs any more need not be remembered.
	keep := map[string]bool{}
	for _, vm := range obs.VMs {
		keep[vm.Meta.Revision] = true
	}
	for rev := range r.gc.revisions {
		if !keep[rev] {
			delete(r.gc.revisions, rev)
		}
	}
}

func addFleet(inUse map[string]bool, f *sources.Fleet) {
	for _, svc := range f.Services {
		addService(inUse, svc)
	}
}

func addService(inUse map[string]bool, svc sources.Service) {
	for _, a := range []*sources.Artifact{svc.Image.Kernel, svc.Image.Initrd, svc.Image.Disk} {
		if a != nil {
			inUse[a.SHA256] = true
		}
	}
}
