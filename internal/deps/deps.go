package main

import (
	_ "github.com/digitalocean/go-qemu/qmp"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/hashicorp/consul/api"
	_ "gopkg.in/yaml.v3"
	_ "libvirt.org/go/libvirt"
	_ "libvirt.org/go/libvirtxml"
)

func main() {}
