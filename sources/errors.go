package sources

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// String formats the position as file:line:col, the form editors and terminals link.
func (p Pos) String() string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

func comparePos(a, b Pos) int {
	return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
}

// Error is one problem in a fleet file, at the place a person has to edit to fix it.
type Error struct {
	Pos Pos
	Msg string
	// Err is the sentinel the problem is an instance of (ErrFleetTooLarge), or nil.
	Err error
}

func (e *Error) Error() string {
	return e.Pos.String() + ": " + e.Msg
}

// Unwrap lets errors.Is find the sentinel of a limit that was hit.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in a fleet, sorted by position, so one run of
// `drover validate` shows all of them instead of one per attempt. It holds at most
// maxErrors of them and then one that counts the rest, so a hostile file cannot make
// the message large.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As look into every problem.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// ErrNoFleetFiles means a fleet directory holds no *.yaml or *.yml file.
var ErrNoFleetFiles = errors.New("no *.yaml or *.yml files")

// ErrFleetTooLarge means a fleet file, or the fleet as a whole, is over a limit of
// limits.go; the error names the file and the limit.
var ErrFleetTooLarge = errors.New("fleet too large")

const (
	// maxErrors is how many problems a fleet reports; a file of a thousand broken
	// services says so in a count.
	maxErrors = 100
	// maxMsgBytes bounds one message, whatever it quotes.
	maxMsgBytes = 512
	// excerptBytes is how much of a value a message quotes.
	excerptBytes = 64
)

// errorSet collects the problems of a fleet: the first maxErrors found, and a count of
// the rest.
type errorSet struct {
	errs    Errors
	omitted int
	// firstOmitted is where the first problem not kept was found.
	firstOmitted Pos
}

// full says whether a problem found now would only be counted, so that its message
// need not be formatted.
func (s *errorSet) full() bool { return len(s.errs) >= maxErrors }

// omit counts a problem at pos that is not kept.
func (s *errorSet) omit(pos Pos) {
	if s.omitted == 0 {
		s.firstOmitted = pos
	}
	s.omitted++
}

func (s *errorSet) add(e *Error) {
	if s.full() {
		s.omit(e.Pos)
		return
	}
	if len(e.Msg) > maxMsgBytes {
		e.Msg = clip(e.Msg, maxMsgBytes) + "…"
	}
	s.errs = append(s.errs, e)
}

func (s *errorSet) merge(o errorSet) {
	for _, e := range o.errs {
		s.add(e)
	}
	if o.omitted > 0 {
		s.omit(o.firstOmitted)
		s.omitted += o.omitted - 1
	}
}

func (s *errorSet) empty() bool { return len(s.errs) == 0 }

// err returns the problems sorted by position, with the count of those left out last.
func (s *errorSet) err() Errors {
	if len(s.errs) == 0 {
		return nil
	}
	errs := slices.Clone(s.errs)
	slices.SortStableFunc(errs, func(a, b *Error) int { return comparePos(a.Pos, b.Pos) })
	if s.omitted > 0 {
		errs = append(errs, &Error{Pos: s.firstOmitted, Msg: fmt.Sprintf("%d more problems not shown (only the first %d are)", s.omitted, maxErrors)})
	}
	return errs
}

// clip cuts s to at most n bytes, at a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// excerpt quotes a value from a fleet file for a message: all of it when short, else
// its start and its length, so that a megabyte string makes a short message.
func excerpt(s string) string {
	if len(s) <= excerptBytes {
		return strconv.Quote(s)
	}
	return strconv.Quote(clip(s, excerptBytes)) + fmt.Sprintf("… (%d bytes)", len(s))
}

// rawExcerpt is excerpt for text shown unquoted when short, such as a number.
func rawExcerpt(s string) string {
	if len(s) <= excerptBytes {
		return s
	}
	return excerpt(s)
}

// fmtBytes formats a size for a message.
func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
