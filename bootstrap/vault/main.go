// Command vault builds the real HashiCorp Vault server and CLI from its Go module, so
// development and tests run against the genuine article on machines where no vault
// binary can be downloaded.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
