package sources

import "testing"

func TestParseImageSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "20GiB": 20 << 30, "512 MiB": 512 << 20, "1TiB": 1 << 40} {
		if got, err := ParseImageSize(in); err != nil || got != want {
			t.Errorf("ParseImageSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1GiB", "20GB", "lots", "99999999999TiB"} {
		if got, err := ParseImageSize(in); err == nil {
			t.Errorf("ParseImageSize(%q) = %d, want an error", in, got)
		}
	}
}
