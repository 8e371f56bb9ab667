package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"

	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/controller"
	"github.com/nhi-dev/scim-operator/internal/controller/streams"
	"github.com/nhi-dev/scim-operator/internal/secevent"
)

// ssfFlags are the Shared Signals transmitter's settings.
type ssfFlags struct {
	addr, issuer, certDir, keySecret string
	clusterPushAllowed               string
	maxPending                       int
}

func (f *ssfFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "ssf-bind-address", "0",
		`HTTPS address of the Shared Signals (SSF 1.0) transmitter, e.g. ":8443"; "0" (the default) runs none.`)
	fs.StringVar(&f.issuer, "ssf-issuer", "",
		"The transmitter's issuer: the https URL receivers reach it at (the iss of its tokens; a namespace's issuer is "+
			"<issuer>/namespaces/<namespace>).")
	fs.StringVar(&f.certDir, "ssf-cert-dir", "/tmp/k8s-ssf-server/serving-certs",
		"Directory with the transmitter's serving certificate, tls.crt and tls.key (read again when they change).")
	fs.StringVar(&f.keySecret, "ssf-key-secret", "",
		"Secret ([namespace/]name; default namespace: the cluster resource namespace) holding the PEM key the "+
			"transmitter signs with, in tls.key or key.pem, and optionally its kid; read again every minute (a key "+
			"replaced stays in the JWK Set for --security-events-max-age). Default: --security-events-key-secret.")
	fs.StringVar(&f.clusterPushAllowed, "ssf-cluster-push-allowed-cidrs", "",
		"Comma-separated CIDRs the push streams of the operator's namespace may reach besides what "+
			"--namespaced-target-allowed-cidrs allows (a SIEM inside the cluster); a namespace's streams never may.")
	fs.IntVar(&f.maxPending, "ssf-max-pending", streams.DefaultMaxPending,
		"Tokens a stream holds for its receiver before it is backlogged (no more recorded until the receiver takes some).")
}

// config is the transmitter's configuration; nil when it is off.
func (f *ssfFlags) config(events secevent.Flags, defaultNamespace string) (*controller.SSFConfig, error) {
	if f.addr == "0" || f.addr == "" {
		if f.issuer != "" {
			return nil, errors.New("--ssf-issuer is set without --ssf-bind-address")
		}
		return nil, nil
	}
	u, err := url.Parse(f.issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("--ssf-issuer %q must be an https URL without query, fragment or user information", f.issuer)
	}
	keySecret := f.keySecret
	if keySecret == "" {
		keySecret = events.KeySecret
	}
	if keySecret == "" {
		return nil, errors.New("--ssf-key-secret (or --security-events-key-secret) is required with --ssf-bind-address")
	}
	ref, err := secevent.ParseSecretRef(keySecret, defaultNamespace)
	if err != nil {
		return nil, fmt.Errorf("--ssf-key-secret: %w", err)
	}
	if f.maxPending <= 0 {
		return nil, errors.New("--ssf-max-pending must be positive")
	}
	allowed, err := connect.ParseCIDRs(f.clusterPushAllowed)
	if err != nil {
		return nil, fmt.Errorf("--ssf-cluster-push-allowed-cidrs: %w", err)
	}
	return &controller.SSFConfig{Addr: f.addr, CertDir: f.certDir, Issuer: f.issuer, KeySecret: ref, MaxPending: f.maxPending,
		ClusterPushAllowedCIDRs: allowed}, nil
}
