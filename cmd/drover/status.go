package main

import (
	"fmt"
	"net"

	"github.com/drover-dev/drover/internal/secretfile"
)

// loopbackListen reports whether addr (host:port) only takes connections from this
// host: a loopback IP or "localhost". An empty host listens on every interface.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readToken reads a bearer token from a file: one line, surrounding space ignored,
// bounded (a FIFO or a huge file there fails instead of blocking start-up).
func readToken(path string) (string, error) {
	tok, err := secretfile.ReadLine(path)
	if err != nil {
		return "", fmt.Errorf("--listen-token-file: %w", err)
	}
	return tok, nil
}
