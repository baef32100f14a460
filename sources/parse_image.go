package sources

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/drover-dev/drover/internal/redact"
	"gopkg.in/yaml.v3"
)

var (
	imageFields    = []string{"kernel", "initrd", "cmdline", "disk"}
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
	return img
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
