package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/nhi-dev/scim-operator/internal/kubeauth"
)

// version is stamped at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// metricsFlags configure the metrics endpoint, with the flag names and defaults of
// kubebuilder's scaffold: HTTPS, every request authenticated (TokenReview) and authorised
// (SubjectAccessReview on the non-resource URL /metrics) by the API server.
type metricsFlags struct {
	addr     string
	secure   bool
	certPath string
	http2    bool
}

func (m *metricsFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&m.addr, "metrics-bind-address", ":8443", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	fs.BoolVar(&m.secure, "metrics-secure", true,
		"Serve metrics over HTTPS to callers whose bearer token the API server authenticates and authorises to get "+
			"/metrics (ClusterRole metrics-reader). false serves plain HTTP to anyone, for local development.")
	fs.StringVar(&m.certPath, "metrics-cert-path", "",
		"Directory holding the metrics server's tls.crt and tls.key (e.g. a cert-manager Secret), reloaded when they "+
			"change; empty: a self-signed certificate generated in memory at start.")
	fs.BoolVar(&m.http2, "enable-http2", false,
		"Offer HTTP/2 on the metrics server; off by default (HTTP/2 Rapid Reset and Stream Cancellation, CVE-2023-44487, CVE-2023-39325).")
}

// options returns the metrics server options and, with --metrics-cert-path, the certificate
// watcher that the manager must run.
func (m *metricsFlags) options() (metricsserver.Options, *certwatcher.CertWatcher, error) {
	opts := metricsserver.Options{BindAddress: m.addr, SecureServing: m.secure}
	if !m.secure {
		return opts, nil, nil
	}
	opts.FilterProvider = kubeauth.MetricsFilter
	if !m.http2 {
		opts.TLSOpts = append(opts.TLSOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	if m.certPath == "" {
		return opts, nil, nil
	}
	// An explicit watcher: controller-runtime's own (CertDir) falls back to a self-signed
	// certificate when the files are missing, which would hide a wrong path.
	w, err := certwatcher.New(filepath.Join(m.certPath, "tls.crt"), filepath.Join(m.certPath, "tls.key"))
	if err != nil {
		return opts, nil, fmt.Errorf("loading the metrics certificate from %s: %w", m.certPath, err)
	}
	opts.TLSOpts = append(opts.TLSOpts, func(c *tls.Config) { c.GetCertificate = w.GetCertificate })
	return opts, w, nil
}
