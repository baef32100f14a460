package sources

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseImageSize reads a size as --image-max-size takes it: bytes, or a number with
// KiB, MiB, GiB or TiB.
func ParseImageSize(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}}
	num, shift := strings.TrimSpace(s), uint(0)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, shift = strings.TrimSpace(n), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("image size %q: want a positive number of bytes, or of KiB, MiB, GiB or TiB", s)
	}
	return n << shift, nil
}
