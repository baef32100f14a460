package sources

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
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
}

func (e *Error) Error() string {
	return e.Pos.String() + ": " + e.Msg
}

// Errors is every problem found in a fleet, sorted by position, so one run of
// `drover validate` shows all of them instead of one per attempt.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int { return comparePos(a.Pos, b.Pos) })
}

// ErrNoFleetFiles means a fleet directory holds no *.yaml or *.yml file.
var ErrNoFleetFiles = errors.New("no *.yaml or *.yml files")
