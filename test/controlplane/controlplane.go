// Package controlplane starts a local Kubernetes control plane for `make dev` and end-to-end
// tests: etcd and kube-apiserver through envtest, plus kube-controller-manager (garbage
// collector, namespace and service account controllers) so ownerReference cascades and
// namespace deletion are real.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/nhi-dev/scim-operator/test/process"
)

// Options configure Start.
type Options struct {
	// Assets is the directory with etcd, kube-apiserver, kube-controller-manager and kubectl.
	Assets string
	// CRDDirs are installed before Start returns.
	CRDDirs []string
	// Dir receives the kubeconfig and the logs.
	Dir string
	// ControllerManager also starts kube-controller-manager.
	ControllerManager bool
	// Kustomizations are applied with kubectl (apply -k) before Start returns, e.g.
	// config/admission.
	Kustomizations []string
}

// ControlPlane is a running control plane.
type ControlPlane struct {
	Env        *envtest.Environment
	Config     *rest.Config
	Kubeconfig string
	opts       Options
	kcm        *process.Process
}

// Start starts etcd, kube-apiserver and, if asked, kube-controller-manager, and writes an
// admin kubeconfig to Dir/kubeconfig.
func Start(opts Options) (*ControlPlane, error) {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: opts.Assets,
		CRDDirectoryPaths:     opts.CRDDirs,
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	cp := &ControlPlane{Env: env, Config: cfg, opts: opts}
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = cp.Stop()
		return nil, fmt.Errorf("creating the admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		_ = cp.Stop()
		return nil, err
	}
	cp.Kubeconfig = filepath.Join(opts.Dir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	for _, k := range opts.Kustomizations {
		out, err := exec.Command(filepath.Join(opts.Assets, "kubectl"), "--kubeconfig", cp.Kubeconfig, "apply", "-k", k).CombinedOutput()
		if err != nil {
			_ = cp.Stop()
			return nil, fmt.Errorf("kubectl apply -k %s: %w: %s", k, err, out)
		}
	}
	if opts.ControllerManager {
		if err := cp.startControllerManager(); err != nil {
			_ = cp.Stop()
			return nil, err
		}
	}
	return cp, nil
}

func (cp *ControlPlane) startControllerManager() error {
	// It has no health endpoint here (secure port off): Start watches it for 2 s instead.
	kcm, err := process.Start("kube-controller-manager", filepath.Join(cp.opts.Dir, "kube-controller-manager.log"),
		process.Options{Settle: 2 * time.Second}, filepath.Join(cp.opts.Assets, "kube-controller-manager"),
		"--kubeconfig", cp.Kubeconfig,
		"--authentication-kubeconfig", cp.Kubeconfig,
		"--authorization-kubeconfig", cp.Kubeconfig,
		"--controllers", "garbagecollector,namespace,serviceaccount",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--bind-address", "127.0.0.1",
		"--secure-port", "0",
		"--concurrent-gc-syncs", "20",
		// Upstream's default (20 QPS) makes the garbage collector, not the operator, the
		// bottleneck of mass revocation; clusters that care raise it too.
		"--kube-api-qps", "300",
		"--kube-api-burst", "600",
		"--concurrent-namespace-syncs", "5",
		"-v", "1",
	)
	if err != nil {
		return err
	}
	cp.kcm = kcm
	return nil
}

// Stop stops every process; it is safe to call more than once.
func (cp *ControlPlane) Stop() error {
	var errs []error
	if cp.kcm != nil {
		cp.kcm.Stop(10 * time.Second)
		cp.kcm = nil
	}
	if cp.Env != nil {
		if err := cp.Env.Stop(); err != nil {
			errs = append(errs, err)
		}
		cp.Env = nil
	}
	return errors.Join(errs...)
}

// Kubectl runs the kubectl from Assets against this control plane.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(cp.opts.Assets, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig)
	return cmd
}

// WaitForGarbageCollector makes dependent (not yet created) the dependent of a throwaway
// ConfigMap, deletes the ConfigMap and waits until the garbage collector deleted dependent.
// kube-controller-manager rediscovers resources every 30 s, so a CRD installed a moment ago
// is not yet collected; measurements should not include that one-time wait.
func WaitForGarbageCollector(ctx context.Context, c client.Client, dependent client.Object, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: dependent.GetNamespace(), GenerateName: "gc-probe-"}}
	if err := c.Create(ctx, owner); err != nil {
		return 0, err
	}
	dependent.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}})
	for {
		err := c.Create(ctx, dependent)
		if err == nil {
			break
		}
		// With a MutatingAdmissionPolicy on the kind (config/admission), the API server answers
		// 503 for about a second after the CRD is created, until it has published its schema.
		if !apierrors.IsServiceUnavailable(err) || time.Since(start) > timeout {
			return 0, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(dependent.GetFinalizers()) > 0 {
		// Set at creation by an admission policy (config/admission); no controller runs yet
		// to release it, and the probe only needs the collector to delete it.
		patch := client.MergeFrom(dependent.DeepCopyObject().(client.Object))
		dependent.SetFinalizers(nil)
		if err := c.Patch(ctx, dependent, patch); err != nil {
			return 0, err
		}
	}
	if err := c.Delete(ctx, owner); err != nil {
		return 0, err
	}
	for time.Since(start) < timeout {
		if err := c.Get(ctx, client.ObjectKeyFromObject(dependent), dependent); apierrors.IsNotFound(err) {
			return time.Since(start), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("the garbage collector did not delete %s within %s", dependent.GetName(), timeout)
}
