// Command scimserver runs the reference SCIM 2.0 service provider (in-memory) for local development.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nhi-dev/scim-operator/test/scimserver"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address")
	token := flag.String("token", envOr("SCIM_SERVER_TOKEN", "dev-token"), "bearer token clients must send (default $SCIM_SERVER_TOKEN, else dev-token)")
	profile := flag.String("profile", "rfc", "quirk profile: behave like this kind of provider (see test/scimserver/PROFILES.md): "+profileNames())
	agents := flag.Bool("agents", false, "also serve the Agent resource type at /Agents (draft-abbey-scim-agent-extension-00)")
	wzdk := flag.Bool("agents-wzdk", false, "also serve the Agent resource type at /Agents as draft-wzdk-scim-agent-resource-00 defines it (named by agentUserName)")
	flag.Parse()

	p, ok := scimserver.ProfileNamed(*profile)
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown profile %q; known: %s\n", *profile, profileNames())
		os.Exit(2)
	}
	opts := []scimserver.Option{scimserver.WithProfile(p)}
	switch {
	case *wzdk:
		opts = append(opts, scimserver.WithWZDKAgents())
	case *agents:
		opts = append(opts, scimserver.WithAgents())
	}
	srv, err := scimserver.New(*token, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := srv.Start(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "listening:", err)
		os.Exit(1)
	}
	fmt.Printf("reference SCIM server on %s (profile %s, agents %v; bearer token from --token or $SCIM_SERVER_TOKEN)\n", srv.Endpoint(), p.Name, *agents || *wzdk)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	srv.Stop()
}

func profileNames() string {
	var names []string
	for _, p := range scimserver.Profiles() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
