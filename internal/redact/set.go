package redact

import (
	"slices"
	"sync"
)

// Set is the secrets to mask, growing while Drover runs: a token read again from its
// file after a rotation joins the set before anything can print it. It is safe for
// concurrent use; a nil *Set holds nothing.
type Set struct {
	mu      sync.RWMutex
	secrets []string
}

// NewSet returns a Set holding secrets.
func NewSet(secrets ...string) *Set {
	s := &Set{}
	s.Add(secrets...)
	return s
}

// Add adds secrets to the set; empty ones and ones already in it are ignored.
func (s *Set) Add(secrets ...string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range secrets {
		if sec != "" && !slices.Contains(s.secrets, sec) {
			s.secrets = append(s.secrets, sec)
			// Longest first, so a secret that contains another is masked whole.
			slices.SortStableFunc(s.secrets, func(a, b string) int { return len(b) - len(a) })
		}
	}
}

// List returns the secrets in the set.
func (s *Set) List() []string {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.secrets)
}

// String masks every secret of the set and URL credentials in text.
func (s *Set) String(text string) string { return Secrets(text, s.List()...) }
