package sources

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/drover-dev/drover/internal/redact"
	"gopkg.in/yaml.v3"
)

// Values of `image.firmware`.
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

var (
	imageFields    = []string{"kernel", "initrd", "cmdline", "disk", "firmware", "disk_size"}
	artifactFields = []string{"url", "sha256"}
	sha256RE       = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

func (p *parser) image(n *yaml.Node) Image {
	var img Image
	b, ok := p.mapping(n, "image", "image", imageFields)
	if !ok {
		return img
	}
	if f, ok := b.get("kernel"); ok {
		img.Kernel = p.artifact(f.val, "image.kernel")
	}
	if f, ok := b.get("disk"); ok {
		img.Disk = p.artifact(f.val, "image.disk")
	}
	_, hasKernel := b.get("kernel")
	_, hasDisk := b.get("disk")
	if !hasKernel && !hasDisk {
		p.errorf(b.node, "image: at least one of kernel or disk is required")
	}
	if f, ok := b.get("initrd"); ok {
		img.Initrd = p.artifact(f.val, "image.initrd")
		if !hasKernel {
			p.errorf(f.key, "image.initrd needs image.kernel")
		}
	}
	if f, ok := b.get("cmdline"); ok {
		// Printable only: a control character, or one XML cannot carry, would reach the
		// guest changed (libvirt's XML replaces it) or cut a QEMU argument.
		if v, ok := p.text(b, f, "cmdline", MaxCmdlineBytes); ok {
			img.Cmdline = v
		}
		if !hasKernel {
			p.errorf(f.key, "image.cmdline needs image.kernel")
		}
	}
	if f, ok := b.get("firmware"); ok {
		if v, ok := p.oneOf(b, f, "firmware", FirmwareBIOS, FirmwareUEFI); ok {
			img.Firmware = v
		}
		if hasKernel {
			// A kernel boot never runs the firmware's boot path, so the choice would
			// silently mean nothing.
			p.errorf(f.key, "image.firmware applies to a disk booted without a kernel; remove it or image.kernel")
		} else if !hasDisk {
			p.errorf(f.key, "image.firmware needs image.disk")
		}
	}
	if img.Firmware == "" && hasDisk && !hasKernel {
		img.Firmware = FirmwareBIOS
	}
	if f, ok := b.get("disk_size"); ok {
		if v, ok := p.diskSize(f); ok {
			img.DiskSizeBytes = v
		}
		if !hasDisk {
			p.errorf(f.key, "image.disk_size needs image.disk")
		}
	}
	return img
}

// diskSize reads `image.disk_size`, a size in MiB or GiB within [1MiB, MaxDiskSize].
// Whether it is at least the golden disk's size is known only once the disk is fetched:
// the driver refuses a smaller one (hypervisor.ErrInvalidSpec).
func (p *parser) diskSize(f field) (int64, bool) {
	n := f.val
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errorf(n, "image.disk_size: want a size with unit MiB or GiB such as 512MiB or 20GiB, got %s", describe(n))
		return 0, false
	}
	m := memoryRE.FindStringSubmatch(n.Value)
	if m == nil {
		p.errorf(n, "image.disk_size: want a size with unit MiB or GiB such as 512MiB or 20GiB, got %s", describe(n))
		return 0, false
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	unit := int64(1 << 20)
	if m[2] == "GiB" {
		unit = 1 << 30
	}
	if err != nil || v > MaxDiskSizeBytes/unit {
		p.errorf(n, "image.disk_size %s is too large: at most %dGiB", rawExcerpt(n.Value), MaxDiskSizeBytes>>30)
		return 0, false
	}
	if v == 0 {
		p.errorf(n, "image.disk_size must be at least 1MiB, got %s", rawExcerpt(n.Value))
		return 0, false
	}
	return v * unit, true
}

func (p *parser) artifact(n *yaml.Node, path string) *Artifact {
	b, ok := p.mapping(n, path, path, artifactFields)
	if !ok {
		return nil
	}
	a := &Artifact{}
	if f, ok := p.require(b, "url"); ok {
		if v, ok := p.text(b, f, "url", MaxURLBytes); ok {
			if msg := checkImageURL(v); msg != "" {
				p.errorf(f.val, "%s: %s", b.fieldPath("url"), msg)
			} else {
				a.URL = v
			}
		}
	}
	if f, ok := p.require(b, "sha256"); ok {
		if v, ok := p.str(b, f, "sha256"); ok {
			if sha256RE.MatchString(v) {
				a.SHA256 = strings.ToLower(v)
			} else {
				p.errorf(f.val, "%s: want 64 hex digits, got %s", b.fieldPath("sha256"), excerpt(v))
			}
		}
	}
	return a
}

// checkImageURL returns what is wrong with an image URL, or "" when it is usable. The
// URL is quoted with its credentials masked.
func checkImageURL(s string) string {
	shown := excerpt(redact.URL(s))
	u, err := url.Parse(s)
	if err != nil {
		return "invalid URL " + shown
	}
	if strings.Contains(s, " ") {
		return "a URL has no spaces (write %20): " + shown
	}
	switch u.Scheme {
	case "file":
		// file://host/path would silently drop the host, and file:rel has no path at all.
		if u.Host != "" || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
			return "file URL " + shown + " must be absolute, such as file:///srv/images/disk.qcow2"
		}
	case "http", "https":
		if u.Host == "" {
			return "URL " + shown + " has no host"
		}
	default:
		return "URL " + shown + ": want a file://, http:// or https:// URL"
	}
	return ""
}
