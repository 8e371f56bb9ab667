// Command scimserver runs the reference SCIM 2.0 service provider (in-memory) for local development.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nhi-dev/scim-operator/test/scimserver"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address")
	token := flag.String("token", "dev-token", "bearer token clients must send")
	flag.Parse()

	srv, err := scimserver.New(*token)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := srv.Start(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "listening:", err)
		os.Exit(1)
	}
	fmt.Printf("reference SCIM server on %s (bearer token from --token)\n", srv.Endpoint())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	srv.Stop()
}
