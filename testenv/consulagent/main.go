// Command consul-agent is the Consul agent (MPL-2.0 v1.15.4) for Drover's tests and demo.
//
// Consul is not a Debian package, so the tests build it from the Go module proxy. This
// is a separate module so the agent's large dependency tree stays out of Drover's go.mod.
// Only the agent command is linked: the tests and demo need nothing else from the CLI.
package main

import (
	"os"

	"github.com/hashicorp/consul/command/agent"
	"github.com/hashicorp/consul/command/cli"
	mcli "github.com/mitchellh/cli"
)

func main() {
	args := os.Args[1:]
	// Accept `consul-agent agent -dev …` as well as `consul-agent -dev …`, so the
	// binary can be driven with the same arguments as the real consul CLI.
	if len(args) > 0 && args[0] == "agent" {
		args = args[1:]
	}
	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Reader: os.Stdin, Writer: os.Stdout, ErrorWriter: os.Stderr}}
	os.Exit(agent.New(ui).Run(args))
}
