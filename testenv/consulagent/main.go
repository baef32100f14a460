// Command consul-agent is the Consul agent (MPL-2.0 v1.15.4) for Drover's tests and demo.
//
// Consul is not a Debian package, so the tests build it from the Go module proxy. This
// is a separate module so the agent's large dependency tree stays out of Drover's go.mod.
package main

import (
	"os"

	"github.com/hashicorp/consul/command/agent"
	"github.com/mitchellh/cli"
)

func main() {
	ui := &cli.BasicUi{Reader: os.Stdin, Writer: os.Stdout, ErrorWriter: os.Stderr}
	os.Exit(agent.New(ui).Run(os.Args[1:]))
}
