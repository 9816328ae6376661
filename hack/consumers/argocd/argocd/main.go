// Command argocd is Argo CD's own multi-call binary (cmd/main.go of Argo CD v3.6.1) cut down to
// the three programs that deploy from Git: argocd-application-controller, argocd-repo-server
// and argocd-git-ask-pass (which the repo-server's git runs as GIT_ASKPASS=argocd with
// ARGOCD_BINARY_NAME=argocd-git-ask-pass). It dispatches on argv[0] or ARGOCD_BINARY_NAME as
// upstream does and runs Argo CD's own cobra commands, unchanged.
//
// Why not upstream's cmd/main.go: it links the API server, CLI, Dex, notifications and the
// ApplicationSet controller (SCM providers for every forge) too, none of which takes part in
// a sync; tests/e2e/test_argocd_deploy.py runs only these two servers.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	gitaskpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func init() {
	// As upstream: klog through Argo CD's logrus configuration.
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	// Upstream calls util/grpc.DisableSRVLookups here, which panics unless SRV lookups are
	// on: only gRPC's grpclb balancer turns them on (in its init), and upstream links it
	// through the commands left out here. This binary does not (go list -deps), so they
	// are off already, which is what the workaround is for.

	name := filepath.Base(os.Args[0])
	if val := os.Getenv("ARGOCD_BINARY_NAME"); val != "" {
		name = val
	}
	var command *cobra.Command
	switch name {
	case common.CommandApplicationController:
		command = appcontroller.NewCommand()
	case common.CommandRepoServer:
		command = reposerver.NewCommand()
	case common.CommandGitAskPass:
		command = gitaskpass.NewCommand()
		command.SilenceErrors, command.SilenceUsage = true, true
	default:
		fmt.Fprintf(os.Stderr, "argocd: run as %s, %s or %s (argv[0] or ARGOCD_BINARY_NAME), not %q\n",
			common.CommandApplicationController, common.CommandRepoServer, common.CommandGitAskPass, name)
		os.Exit(2)
	}
	if err := command.Execute(); err != nil {
		if command.SilenceErrors {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}
