package plugin

import (
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/homedir"
)

// IOStreams are where a command reads its input and writes its output and its messages: the
// terminal in main, buffers in tests.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// ConfigFlags are kubectl's connection flags (--kubeconfig, --context, -n/--namespace, --as,
// --token, ...), with kubectl's names and help, bound with client-go's clientcmd. The plugin
// finds its cluster, credentials and namespace from them and the kubeconfig as kubectl does.
type ConfigFlags struct {
	// kubeconfig is --kubeconfig: the kubeconfig file, instead of $KUBECONFIG or ~/.kube/config.
	kubeconfig string
	// cacheDir is --cache-dir, accepted so that kubectl's command lines work unchanged: the
	// plugin makes no discovery requests, so it has nothing to cache there.
	cacheDir string
	// userExtra is --as-user-extra, KEY=VALUE per use.
	userExtra []string
	// overrides holds every other flag: they override the kubeconfig's values.
	overrides clientcmd.ConfigOverrides
	// loader is built from the flags on first use, after they are parsed.
	loader clientcmd.ClientConfig
}

// NewConfigFlags returns the flags with kubectl's defaults.
func NewConfigFlags() *ConfigFlags {
	return &ConfigFlags{overrides: clientcmd.ConfigOverrides{ClusterDefaults: clientcmd.ClusterDefaults}}
}

// AddFlags registers the flags on fs under kubectl's names, short names, defaults and help.
func (f *ConfigFlags) AddFlags(fs *pflag.FlagSet) {
	names := clientcmd.RecommendedConfigOverrideFlags("")
	// kubectl's own flags are those of k8s.io/cli-runtime, which differ from clientcmd's
	// recommendations in a few places: -s for --server, some help texts, and no basic
	// authentication (--username, --password). An empty LongName leaves a flag out.
	names.AuthOverrideFlags.Username.LongName = ""
	names.AuthOverrideFlags.Password.LongName = ""
	names.AuthOverrideFlags.Impersonate.Description = "Username to impersonate for the operation. User could be a regular user or a service account in a namespace."
	names.AuthOverrideFlags.ImpersonateUID.Description = "UID to impersonate for the operation."
	names.ClusterOverrideFlags.APIServer.ShortName = "s"
	names.ClusterOverrideFlags.TLSServerName.Description = "Server name to use for server certificate validation. If it is not provided, the hostname used to contact the server is used"
	names.ClusterOverrideFlags.ProxyURL.Description = "Proxy URL to use for requests to the API server"
	clientcmd.BindOverrideFlags(&f.overrides, fs, names)

	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Path to the kubeconfig file to use for CLI requests.")
	fs.StringVar(&f.cacheDir, "cache-dir", defaultCacheDir(), "Default cache directory")
	fs.StringArrayVar(&f.userExtra, "as-user-extra", nil, "User extras to impersonate for the operation, this flag can be repeated to specify multiple values for the same key.")
}

// defaultCacheDir is kubectl's default of --cache-dir: $KUBECACHEDIR, else ~/.kube/cache.
func defaultCacheDir() string {
	if dir := os.Getenv("KUBECACHEDIR"); dir != "" {
		return dir
	}
	return filepath.Join(homedir.HomeDir(), ".kube", "cache")
}

// clientConfig returns the kubeconfig loader of the parsed flags: the kubeconfig of
// --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else the in-cluster config, else
// kubectl's default server ($KUBERNETES_MASTER or http://localhost:8080), with the flags'
// values over the kubeconfig's.
func (f *ConfigFlags) clientConfig() clientcmd.ClientConfig {
	if f.loader != nil {
		return f.loader
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.DefaultClientConfig = &clientcmd.DefaultClientConfig
	rules.ExplicitPath = f.kubeconfig
	// --as-user-extra KEY=VALUE adds VALUE to the impersonated user's extra KEY; a value
	// without "=" is ignored, as kubectl does.
	for _, extra := range f.userExtra {
		key, value, ok := strings.Cut(extra, "=")
		if !ok {
			continue
		}
		if f.overrides.AuthInfo.ImpersonateUserExtra == nil {
			f.overrides.AuthInfo.ImpersonateUserExtra = map[string][]string{}
		}
		f.overrides.AuthInfo.ImpersonateUserExtra[key] = append(f.overrides.AuthInfo.ImpersonateUserExtra[key], value)
	}
	f.loader = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &f.overrides)
	return f.loader
}

// ToRESTConfig returns the configuration of the API server clients: the cluster, the
// credentials and the request timeout.
func (f *ConfigFlags) ToRESTConfig() (*rest.Config, error) {
	return f.clientConfig().ClientConfig()
}

// Namespace returns the namespace of -n, else the one of the kubeconfig's context, else
// "default", as kubectl does.
func (f *ConfigFlags) Namespace() (string, error) {
	ns, _, err := f.clientConfig().Namespace()
	return ns, err
}
