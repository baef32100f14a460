package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/sources"
)

// limits are the flags that bound what a commit can make Drover do on this host: which
// files and addresses its images may come from, how big and slow they may be, and
// how many VMs, how much memory and how many vCPUs its services may take.
type limits struct {
	imageRoots           stringList
	imageAllowHosts      stringList
	imageMaxSize         byteSize
	imageDownloadTimeout time.Duration
	imageGroup           string
	imageGCGrace         time.Duration

	maxVMs    int
	maxMemory byteSize
	maxCPUs   int
}

func (l *limits) register(fs *flag.FlagSet) {
	fs.Var(&l.imageRoots, "image-root", "directory file:// images may be read from, with everything below it (repeatable;\n"+
		"DROVER_IMAGE_ROOT takes a comma-separated list). None: file:// images are refused, so a\n"+
		"commit cannot read host files (/proc/self/environ, keys) into a guest")
	fs.Var(&l.imageAllowHosts, "image-allow-host", "host name, IP or CIDR that http(s) images may come from although it is loopback,\n"+
		"link-local, unspecified, multicast or this host's own address (repeatable; comma-separated\n"+
		"in DROVER_IMAGE_ALLOW_HOST). None: a commit cannot make Drover call the host's own services\n"+
		"(Consul, /status) or the cloud metadata service")
	l.imageMaxSize = byteSize(sources.DefaultImageMaxSize)
	fs.Var(&l.imageMaxSize, "image-max-size", "largest image (bytes, or with KiB, MiB, GiB or TiB): protects the disk holding the cache")
	fs.DurationVar(&l.imageDownloadTimeout, "image-download-timeout", sources.DefaultImageDownloadTimeout, "deadline of one image download, apart from healthy_deadline: a stalled server cannot\n"+
		"hold a rollout, and a timed-out download is retried, not a failed revision")
	fs.StringVar(&l.imageGroup, "image-group", "", "group that may read cached images: the hypervisor's QEMU group. Default "+sources.DefaultImageGroup+" if it\n"+
		"exists; none: files readable by Drover only")
	fs.DurationVar(&l.imageGCGrace, "image-gc-grace", sources.DefaultImageGCGrace, "a cached image no VM and no current revision uses is removed after this long unused")

	b := reconciler.DefaultBudget()
	fs.IntVar(&l.maxVMs, "max-vms", b.MaxVMs, "most VMs this fleet may have at once, rollouts included: a commit asking for more is\n"+
		"refused before any VM is created")
	l.maxMemory = byteSize(int64(b.MaxMemoryMiB) << 20)
	fs.Var(&l.maxMemory, "max-memory", "most guest memory this fleet's VMs may have at once, rollouts included (MiB or GiB).\n"+
		"Default: the host's RAM less a tenth (at least 1GiB), so guests cannot get the host OOM-killed")
	fs.IntVar(&l.maxCPUs, "max-cpus", b.MaxCPUs, "most vCPUs this fleet's VMs may have at once, rollouts included. Default: 4 per host CPU")
}

func (l *limits) validate() []string {
	var problems []string
	if l.imageDownloadTimeout <= 0 {
		problems = append(problems, fmt.Sprintf("--image-download-timeout %s: must be positive", l.imageDownloadTimeout))
	}
	if l.imageGCGrace <= 0 {
		problems = append(problems, fmt.Sprintf("--image-gc-grace %s: must be positive", l.imageGCGrace))
	}
	if l.maxVMs < 1 {
		problems = append(problems, fmt.Sprintf("--max-vms %d: want at least 1", l.maxVMs))
	}
	if l.maxCPUs < 1 {
		problems = append(problems, fmt.Sprintf("--max-cpus %d: want at least 1", l.maxCPUs))
	}
	if l.maxMemory < 1<<20 {
		problems = append(problems, fmt.Sprintf("--max-memory %s: want at least 1MiB", l.maxMemory))
	}
	return problems
}

func (l *limits) imageCache(dir string) sources.ImageCacheConfig {
	return sources.ImageCacheConfig{
		Dir: dir, Roots: l.imageRoots, AllowHosts: l.imageAllowHosts,
		MaxSize: int64(l.imageMaxSize), DownloadTimeout: l.imageDownloadTimeout, Group: l.imageGroup,
	}
}

func (l *limits) budget() reconciler.Budget {
	return reconciler.Budget{MaxVMs: l.maxVMs, MaxMemoryMiB: int(l.maxMemory >> 20), MaxCPUs: l.maxCPUs}
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	if v == "" {
		return fmt.Errorf("empty value")
	}
	*s = append(*s, v)
	return nil
}

// setList sets a repeatable flag from the environment: a comma-separated list.
func (s *stringList) setList(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			if err := s.Set(part); err != nil {
				return err
			}
		}
	}
	return nil
}

// byteSize is a size flag: bytes, or a number with KiB, MiB, GiB or TiB.
type byteSize int64

func (b byteSize) String() string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if b > 0 && int64(b)%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", int64(b)>>u.shift, u.suffix)
		}
	}
	return fmt.Sprintf("%d", int64(b))
}

func (b *byteSize) Set(v string) error {
	n, err := sources.ParseImageSize(v)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}
