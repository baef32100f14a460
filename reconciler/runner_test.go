package reconciler

import (
	"errors"
	"fmt"
	"testing"
)

func TestOnlyHeld(t *testing.T) {
	held := &HeldError{Service: "web", Reason: "failed"}
	other := errors.New("consul down")
	tests := []struct {
		err  error
		want bool
	}{
		{held, true},
		{errors.Join(held, &HeldError{Service: "db"}), true},
		{errors.Join(held, other), false},
		{other, false},
		{fmt.Errorf("pass: %w", held), true},
		{&RolloutError{Service: "web", Err: other}, false},
	}
	for i, tt := range tests {
		if got := onlyHeld(tt.err); got != tt.want {
			t.Errorf("%d: onlyHeld(%v) = %v, want %v", i, tt.err, got, tt.want)
		}
	}
}
