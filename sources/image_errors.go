package sources

import (
	"errors"
	"fmt"

	"github.com/drover-dev/drover/internal/redact"
)

// How ImageCache.Get fails tells the caller what to do about it:
//
//   - *ChecksumError: the bytes behind the URL are not the ones the fleet file names.
//     The only verdict on a revision: such an image must never boot.
//   - *PolicyError (errors.Is ErrImageRefused): the operator's limits refuse this image
//     (a file:// outside every --image-root, a refused address, larger than
//     --image-max-size, not a regular file). Nothing was read from the source; retrying
//     changes nothing until the operator or the commit does.
//   - ErrImageUnavailable: the image could not be fetched this time (connection refused
//     or cut, HTTP error status, download deadline, missing file). Retry on a later pass.
//   - The caller's own context ending: its ctx.Err(), wrapped.
var (
	// ErrImageUnavailable marks an image that could not be fetched now but may be later.
	ErrImageUnavailable = errors.New("image unavailable")
	// ErrImageRefused marks an image refused by policy; every *PolicyError matches it.
	ErrImageRefused = errors.New("image refused")
)

// ChecksumError means an image's bytes do not have the digest the fleet file gives.
// Nothing is cached: such an image is never booted. It is only ever returned for bytes
// read from an allowed source, so Got reveals nothing the operator did not allow.
type ChecksumError struct {
	URL  string // redacted
	Want string
	Got  string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("checksum mismatch for %s: want sha256 %s, got %s", e.URL, e.Want, e.Got)
}

// PolicyError is an image the cache refuses to fetch, with the reason and the flag
// that would allow it when there is one.
type PolicyError struct {
	URL    string // redacted
	Reason string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("image %s refused: %s", e.URL, e.Reason)
}

// Is makes every PolicyError match ErrImageRefused.
func (e *PolicyError) Is(target error) bool { return target == ErrImageRefused }

func refused(rawURL, format string, args ...any) *PolicyError {
	return &PolicyError{URL: redact.URL(rawURL), Reason: redact.String(fmt.Sprintf(format, args...))}
}
