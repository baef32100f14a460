package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sign is the X-Drover-Signature of body sent at timestamp (Unix seconds, as in
// X-Drover-Timestamp): "sha256=" and the hex HMAC-SHA256, keyed with secret, of
// timestamp, ".", body. The timestamp is inside the MAC, so a captured notification
// cannot be replayed later with a fresh one.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("signature does not match")
	ErrStale        = errors.New("timestamp outside the tolerance")
)

// Verify is what a receiver runs: signature and timestamp as received in the headers,
// body as received, tolerance how old (or how far ahead) a timestamp may be.
// Constant-time in the signature.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%s %q: %w", HeaderTimestamp, timestamp, ErrStale)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%s %s is %s off: %w", HeaderTimestamp, timestamp, d.Round(time.Second), ErrStale)
	}
	if !strings.HasPrefix(signature, "sha256=") || !hmac.Equal([]byte(signature), []byte(Sign(secret, timestamp, body))) {
		return ErrBadSignature
	}
	return nil
}
