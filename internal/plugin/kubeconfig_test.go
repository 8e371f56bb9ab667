package plugin

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// twoContexts is a kubeconfig with contexts a (current) and b, each with its cluster, user and
// namespace.
const twoContexts = `apiVersion: v1
kind: Config
current-context: a
clusters:
- name: cluster-a
  cluster: {server: "https://a.example:6443"}
- name: cluster-b
  cluster: {server: "https://b.example:6443"}
users:
- name: user-a
  user: {token: token-a}
- name: user-b
  user: {token: token-b}
contexts:
- name: a
  context: {cluster: cluster-a, user: user-a, namespace: ns-a}
- name: b
  context: {cluster: cluster-b, user: user-b, namespace: ns-b}
`

func writeTwoContexts(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// parseConfigFlags parses args as the plugin's connection flags.
func parseConfigFlags(t *testing.T, args ...string) *ConfigFlags {
	t.Helper()
	f := NewConfigFlags()
	fs := pflag.NewFlagSet("kubectl-scim", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	return f
}

func TestConfigFlagsChooseClusterUserAndNamespace(t *testing.T) {
	path := writeTwoContexts(t)
	cases := []struct {
		args            []string
		host, token, ns string
	}{
		{args: []string{"--kubeconfig", path}, host: "https://a.example:6443", token: "token-a", ns: "ns-a"},
		{args: []string{"--kubeconfig", path, "--context", "b"}, host: "https://b.example:6443", token: "token-b", ns: "ns-b"},
		{args: []string{"--kubeconfig", path, "-n", "team-x"}, host: "https://a.example:6443", token: "token-a", ns: "team-x"},
		{args: []string{"--kubeconfig", path, "--context", "b", "--namespace", "team-y"}, host: "https://b.example:6443", token: "token-b", ns: "team-y"},
		// --cluster and --user pick the kubeconfig's entries independently of the context.
		{args: []string{"--kubeconfig", path, "--cluster", "cluster-b", "--user", "user-b"}, host: "https://b.example:6443", token: "token-b", ns: "ns-a"},
		// -s and --token override the kubeconfig's values.
		{args: []string{"--kubeconfig", path, "-s", "https://c.example", "--token", "token-c"}, host: "https://c.example", token: "token-c", ns: "ns-a"},
	}
	for _, c := range cases {
		f := parseConfigFlags(t, c.args...)
		cfg, err := f.ToRESTConfig()
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		ns, err := f.Namespace()
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if cfg.Host != c.host || cfg.BearerToken != c.token || ns != c.ns {
			t.Errorf("%q: host %q, token %q, namespace %q; want %q, %q, %q", c.args, cfg.Host, cfg.BearerToken, ns, c.host, c.token, c.ns)
		}
	}
}

func TestConfigFlagsReadKUBECONFIGWithoutKubeconfigFlag(t *testing.T) {
	t.Setenv("KUBECONFIG", writeTwoContexts(t))
	f := parseConfigFlags(t, "--context", "b")
	cfg, err := f.ToRESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://b.example:6443" {
		t.Errorf("host %q, want the one of $KUBECONFIG's context b", cfg.Host)
	}
}

func TestConfigFlagsImpersonationAndTimeout(t *testing.T) {
	f := parseConfigFlags(t, "--kubeconfig", writeTwoContexts(t), "--as", "alice", "--as-uid", "u-1",
		"--as-group", "g1", "--as-group", "g2", "--as-user-extra", "scopes=read", "--as-user-extra", "scopes=write",
		"--as-user-extra", "no-equals-sign", "--request-timeout", "5s")
	cfg, err := f.ToRESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	imp := cfg.Impersonate
	if imp.UserName != "alice" || imp.UID != "u-1" || !reflect.DeepEqual(imp.Groups, []string{"g1", "g2"}) ||
		!reflect.DeepEqual(imp.Extra, map[string][]string{"scopes": {"read", "write"}}) {
		t.Errorf("impersonation %+v", imp)
	}
	if cfg.Timeout != 5*time.Second {
		t.Errorf("timeout %s, want 5s", cfg.Timeout)
	}
}

func TestConfigFlagsUnknownContextIsAnError(t *testing.T) {
	f := parseConfigFlags(t, "--kubeconfig", writeTwoContexts(t), "--context", "nope")
	if _, err := f.ToRESTConfig(); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("ToRESTConfig with an unknown context: %v, want an error naming it", err)
	}
}

// The plugin offers kubectl's connection flags, under kubectl's names and short names, on
// every subcommand.
func TestCommandHasKubectlConnectionFlags(t *testing.T) {
	cmd := newCommand(&Options{ConfigFlags: NewConfigFlags(), IOStreams: IOStreams{}})
	var got []string
	cmd.PersistentFlags().VisitAll(func(fl *pflag.Flag) {
		name := "--" + fl.Name
		if fl.Shorthand != "" {
			name = "-" + fl.Shorthand + "/" + name
		}
		got = append(got, name)
	})
	sort.Strings(got)
	want := []string{"--as", "--as-group", "--as-uid", "--as-user-extra", "--cache-dir", "--certificate-authority",
		"--client-certificate", "--client-key", "--cluster", "--context", "--disable-compression",
		"--insecure-skip-tls-verify", "--kubeconfig", "--proxy-url", "--request-timeout", "--tls-server-name",
		"--token", "--user", "-n/--namespace", "-s/--server"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("persistent flags %q, want %q", got, want)
	}
}
