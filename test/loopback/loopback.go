// Package loopback serves a test's HTTP handler on a local address that can be stopped and
// started again (a provider or receiver that goes down and comes back on the same address).
package loopback

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server serves one handler between Start and Stop. The zero value is ready to use.
type Server struct {
	mu   sync.Mutex
	http *http.Server
	addr string
}

// Start listens on addr (host:port; port 0 picks one) and serves h until Stop.
func (s *Server) Start(addr string, h http.Handler) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.http != nil {
		return errors.New("already started")
	}
	var ln net.Listener
	var err error
	// A port just released by Stop can take a moment to be reusable.
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	s.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	srv := s.http
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// Stop closes the listener and every open connection: connections are refused until Start.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	_ = s.http.Close()
	s.http = nil
}

// Addr is the listening address after Start (kept after Stop, so Start(Addr()) reuses it).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}
