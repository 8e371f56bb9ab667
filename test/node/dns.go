package node

import (
	"context"
	"net"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// dnsServer is the cluster's DNS, as far as Pods of these suites need one: an A record for
// `<service>.<namespace>.svc.cluster.local` (the Service's ClusterIP, read from the API on each
// question), no AAAA record, and no such name for anything else. It listens on UDP port 53 of
// the host's address, which the kubelet gives Pods as their nameserver (clusterDNS). CoreDNS
// would need building from the module proxy for three lines of records; this is the smallest
// thing that lets the chart's own Service names work unchanged.
type dnsServer struct {
	conn *net.UDPConn
	c    client.Client
}

func startDNS(hostIP string, cfg *rest.Config) (*dnsServer, error) {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(hostIP), Port: 53})
	if err != nil {
		return nil, err
	}
	s := &dnsServer{conn: conn, c: c}
	go s.serve()
	return s, nil
}

func (s *dnsServer) close() { _ = s.conn.Close() }

func (s *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		if reply := s.answer(buf[:n]); reply != nil {
			_, _ = s.conn.WriteToUDP(reply, from)
		}
	}
}

func (s *dnsServer) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	reply := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired},
		Questions: []dnsmessage.Question{q},
	}
	ip := s.lookup(q.Name.String())
	switch {
	case ip == nil:
		reply.RCode = dnsmessage.RCodeNameError
	case q.Type == dnsmessage.TypeA:
		var a [4]byte
		copy(a[:], ip.To4())
		reply.Answers = []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
			Body:   &dnsmessage.AResource{A: a},
		}}
	}
	b, err := reply.Pack()
	if err != nil {
		return nil
	}
	return b
}

// lookup is the ClusterIP of the Service a name names, or nil.
func (s *dnsServer) lookup(name string) net.IP {
	labels := strings.Split(strings.TrimSuffix(strings.ToLower(name), "."), ".")
	if len(labels) != 5 || strings.Join(labels[2:], ".") != "svc."+ClusterDomain {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var svc corev1.Service
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: labels[1], Name: labels[0]}, &svc); err != nil {
		return nil
	}
	ip := net.ParseIP(svc.Spec.ClusterIP).To4()
	if ip == nil {
		return nil // headless or not IPv4: these suites have none
	}
	return ip
}
