package notify

import "testing"

// TestSignKnownAnswer pins the algorithm the README tells receivers to implement
// (the same value openssl dgst -sha256 -hmac and Python's hmac give).
func TestSignKnownAnswer(t *testing.T) {
	got := Sign([]byte("0123456789abcdefXYZ"), "1800000000", []byte(`{"a":1}`))
	const want = "sha256=b5860aff0711aae56de14e6b5c4e10099645c4ba14392406fc79beea71c4d880"
	if got != want {
		t.Errorf("Sign: got %s, want %s", got, want)
	}
}
