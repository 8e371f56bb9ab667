package ssf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// RegisterIndexes adds IndexPendingStream and IndexPendingJTI to the cache behind indexer.
func RegisterIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &scimv1.ServiceIdentity{}, IndexPendingStream, pendingStreams); err != nil {
		return err
	}
	return indexer.IndexField(ctx, &scimv1.ServiceIdentity{}, IndexPendingJTI, pendingJTIs)
}

// Listener serves the Server over TLS on Addr, with the certificate tls.crt and tls.key of
// CertDir (read again when they change, as cert-manager rotates them). It runs on every
// replica: a receiver reaches whichever the Service picks, and every write is locked.
type Listener struct {
	Server  *Server
	Addr    string
	CertDir string
	// Listen, when set, replaces net.Listen (tests take a free port).
	Listen func() (net.Listener, error)
}

// Start implements manager.Runnable.
func (l *Listener) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("ssf")
	cw, err := certwatcher.New(filepath.Join(l.CertDir, "tls.crt"), filepath.Join(l.CertDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("shared signals transmitter certificate: %w", err)
	}
	go func() {
		if err := cw.Start(ctx); err != nil {
			log.Error(err, "Watching the transmitter's certificate")
		}
	}()
	var ln net.Listener
	if l.Listen != nil {
		ln, err = l.Listen()
	} else {
		ln, err = net.Listen("tcp", l.Addr)
	}
	if err != nil {
		return fmt.Errorf("shared signals transmitter: %w", err)
	}
	srv := &http.Server{
		Handler:           l.Server.Handler(),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cw.GetCertificate},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A long poll answers within MaxPollWait.
		WriteTimeout:   l.Server.pollWait() + 30*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return logf.IntoContext(context.Background(), log) },
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("Shared Signals transmitter serving", "address", ln.Addr().String(), "issuer", l.Server.Issuer)
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every replica serves.
func (l *Listener) NeedLeaderElection() bool { return false }

func (s *Server) pollWait() time.Duration {
	if s.MaxPollWait > 0 {
		return s.MaxPollWait
	}
	return DefaultMaxPollWait
}
