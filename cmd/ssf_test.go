package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/nhi-dev/scim-operator/internal/secevent"
)

func TestSSFFlags(t *testing.T) {
	parse := func(args ...string) (*ssfFlags, error) {
		var f ssfFlags
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		f.bind(fs)
		return &f, fs.Parse(args)
	}
	for _, tc := range []struct {
		args   []string
		events secevent.Flags
		want   string // "" (off), "on", or a substring of the error
	}{
		{nil, secevent.Flags{}, ""},
		{[]string{"--ssf-issuer=https://ssf.example.com"}, secevent.Flags{}, "without --ssf-bind-address"},
		{[]string{"--ssf-bind-address=:9443", "--ssf-issuer=http://ssf.example.com", "--ssf-key-secret=k"}, secevent.Flags{}, "https URL"},
		{[]string{"--ssf-bind-address=:9443", "--ssf-issuer=https://ssf.example.com?x=1", "--ssf-key-secret=k"}, secevent.Flags{}, "https URL"},
		{[]string{"--ssf-bind-address=:9443", "--ssf-issuer=https://ssf.example.com"}, secevent.Flags{}, "--ssf-key-secret"},
		{[]string{"--ssf-bind-address=:9443", "--ssf-issuer=https://ssf.example.com"}, secevent.Flags{KeySecret: "set-key"}, "on"},
		{[]string{"--ssf-bind-address=:9443", "--ssf-issuer=https://ssf.example.com", "--ssf-key-secret=Bad_Name"}, secevent.Flags{}, "--ssf-key-secret"},
		{[]string{"--ssf-bind-address=:9443", "--ssf-issuer=https://ssf.example.com", "--ssf-key-secret=k", "--ssf-max-pending=0"}, secevent.Flags{}, "positive"},
		{[]string{"--ssf-bind-address=:9443", "--ssf-issuer=https://ssf.example.com", "--ssf-key-secret=k", "--ssf-cluster-push-allowed-cidrs=10.0.0.0/33"}, secevent.Flags{}, "--ssf-cluster-push-allowed-cidrs"},
		{[]string{"--ssf-bind-address=:9443", "--ssf-issuer=https://ssf.example.com/ops", "--ssf-key-secret=other/k", "--ssf-cluster-push-allowed-cidrs=10.20.0.0/16"}, secevent.Flags{}, "on"},
	} {
		f, err := parse(tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config(tc.events, "ops")
		switch {
		case tc.want == "" && (cfg != nil || err != nil):
			t.Errorf("%v: %+v, %v; want off", tc.args, cfg, err)
		case tc.want == "on" && (cfg == nil || err != nil):
			t.Errorf("%v: %v; want on", tc.args, err)
		case tc.want != "" && tc.want != "on" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v; want an error with %q", tc.args, err, tc.want)
		}
		if tc.want == "on" && cfg != nil && (cfg.KeySecret.Namespace == "" || cfg.Addr != ":9443") {
			t.Errorf("%v: %+v", tc.args, cfg)
		}
	}
}
