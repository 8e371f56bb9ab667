// Command dev runs the whole product locally (`make dev`): a control plane (etcd,
// kube-apiserver, kube-controller-manager), the reference SCIM server on 127.0.0.1:18080,
// the operator as its own process, and config/samples; it prints where to look and stops
// everything on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nhi-dev/scim-operator/test/controlplane"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

func main() {
	assets := flag.String("assets", os.Getenv("KUBEBUILDER_ASSETS"), "directory with etcd, kube-apiserver, kube-controller-manager, kubectl")
	manager := flag.String("manager", "bin/manager", "operator binary")
	dir := flag.String("dir", ".dev", "directory for the kubeconfig and logs")
	scimAddr := flag.String("scim-addr", "127.0.0.1:18080", "reference SCIM server address")
	token := flag.String("token", "dev-token", "reference SCIM server bearer token")
	smoke := flag.Bool("smoke", false, "exit 0 once the samples are Ready (non-zero if they are not within 2 minutes)")
	profile := flag.String("profile", "rfc", "reference SCIM server quirk profile (test/scimserver/PROFILES.md)")
	agents := flag.Bool("agents", false, "the reference SCIM server also serves /Agents")
	flag.Parse()
	p, ok := scimserver.ProfileNamed(*profile)
	if !ok {
		fmt.Fprintf(os.Stderr, "dev: unknown --profile %q\n", *profile)
		os.Exit(2)
	}
	scimOpts = []scimserver.Option{scimserver.WithProfile(p)}
	if *agents {
		scimOpts = append(scimOpts, scimserver.WithAgents())
	}
	if err := run(*assets, *manager, *dir, *scimAddr, *token, *smoke); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

// scimOpts configure the reference SCIM server (--profile, --agents).
var scimOpts []scimserver.Option

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(assets, manager, dir, scimAddr, token string, smoke bool) error {
	if assets == "" {
		return fmt.Errorf("no control-plane binaries: run through `make dev` or pass --assets $(hack/envtest-bins.sh)")
	}
	dir, _ = filepath.Abs(dir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("Starting etcd, kube-apiserver and kube-controller-manager")
	cp, err := controlplane.Start(controlplane.Options{
		Assets: assets, Dir: dir, ControllerManager: true,
		CRDDirs: []string{filepath.Join("config", "crd", "bases")},
		// As config/default installs it.
		Kustomizations: []string{filepath.Join("config", "admission")},
	})
	if err != nil {
		return err
	}
	defer func() { step("Stopping the control plane"); _ = cp.Stop() }()

	step("Starting the reference SCIM server on http://%s%s (token %q)", scimAddr, scimserver.BasePath, token)
	srv, err := scimserver.New(token, scimOpts...)
	if err != nil {
		return err
	}
	if err := srv.Start(scimAddr); err != nil {
		return fmt.Errorf("starting the SCIM server on %s: %w", scimAddr, err)
	}
	defer srv.Stop()

	kubectl := func(args ...string) error {
		cmd := cp.Kubectl(ctx, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd.Run()
	}
	if err := kubectl("create", "namespace", "scim-operator-system"); err != nil {
		return err
	}

	step("Starting the operator (%s); log in %s", manager, filepath.Join(dir, "operator.log"))
	logFile, err := os.Create(filepath.Join(dir, "operator.log"))
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	op := exec.Command(manager, "--kubeconfig", cp.Kubeconfig, "--metrics-bind-address", "127.0.0.1:18081",
		"--health-probe-bind-address", "127.0.0.1:18082", "--cluster-resource-namespace", "scim-operator-system",
		// The reference SCIM server is on loopback, which namespaced targets may not reach otherwise.
		"--namespaced-target-allowed-cidrs", "127.0.0.1/32",
		// config/admission is installed, as config/default's Deployment says.
		"--creation-stamps-guarded")
	op.Stdout, op.Stderr = logFile, logFile
	op.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := op.Start(); err != nil {
		return fmt.Errorf("starting the operator: %w", err)
	}
	var opErr error
	opDone := make(chan struct{})
	go func() { opErr = op.Wait(); close(opDone) }()
	defer func() {
		step("Stopping the operator")
		_ = syscall.Kill(-op.Process.Pid, syscall.SIGTERM)
		select {
		case <-opDone:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-op.Process.Pid, syscall.SIGKILL)
		}
	}()

	step("Applying config/samples")
	// Just after the CRDs are created, the API server answers creates of kinds that a
	// MutatingAdmissionPolicy (config/admission) matches with 503 until it has published their
	// schema: apply again (it is idempotent) for a while, as GitOps tools do.
	for start := time.Now(); ; {
		err := kubectl("apply", "-k", "config/samples")
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return err
		}
		fmt.Printf("(retrying in 1s; %s since the first try)\n", time.Since(start).Round(time.Millisecond))
		time.Sleep(time.Second)
	}
	if err := kubectl("wait", "--for=condition=Ready", "--timeout=120s", "-n", "payments", "serviceidentity", "--all"); err != nil {
		if smoke {
			return fmt.Errorf("samples did not become Ready; see %s", filepath.Join(dir, "operator.log"))
		}
	}
	fmt.Println()
	_ = kubectl("get", "scimtargets,serviceidentities", "-A")
	fmt.Println()
	step("Accounts on the reference SCIM server:")
	for _, u := range srv.Users.All() {
		fmt.Printf("    %-40v externalId=%v active=%v\n", u["userName"], u["externalId"], u["active"])
	}
	fmt.Printf(`
The local cluster is yours to play with:

    export KUBECONFIG=%s
    %s get serviceidentities -A
    curl -s -H 'Authorization: Bearer %s' http://%s%s/Users

Retire a workload and watch its account go within a second:

    kubectl -n payments delete deployment fraud-agent

Logs: %s (operator), %s (kube-controller-manager)
Press Ctrl-C to stop everything.
`, cp.Kubeconfig, filepath.Join(assets, "kubectl"), token, scimAddr, scimserver.BasePath,
		filepath.Join(dir, "operator.log"), filepath.Join(dir, "kube-controller-manager.log"))
	if smoke {
		if n := len(srv.UsersWhere("userName", "billing-exporter.payments")); n != 1 {
			return fmt.Errorf("expected the billing-exporter account on the SCIM server, found %d", n)
		}
		return nil
	}
	select {
	case <-ctx.Done():
		fmt.Println()
	case <-opDone:
		return fmt.Errorf("the operator exited (%v); see %s", opErr, strings.TrimSpace(filepath.Join(dir, "operator.log")))
	}
	return nil
}
