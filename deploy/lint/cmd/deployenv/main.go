// Command deployenv prints, as JSON, the containers a deployment file runs and the environment
// each one gets: the image's ENV under the file's settings, Kubernetes $(VAR) references
// expanded. A variable whose value is a secret the file only names (JOIN_TOKEN from compose's
// env_file or a Kubernetes Secret) is listed under "secrets" with that source and no value:
// whoever runs the configuration supplies it. The end-to-end tests read it to run the same
// configuration as processes.
//
//	deployenv -root ../.. ../../docker-compose.yml
//	deployenv -root ../.. ../../deploy/k8s/clusterkit.yaml
//
// A compose file is recognised by its name (docker-compose*.yml or compose*.yaml); any other
// file is read as Kubernetes manifests. The exit status is 1 when the file cannot be loaded, 2
// for a usage error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	lint "github.com/clusterkit-go/clusterkit/deploy/lint"
)

func main() {
	root := flag.String("root", ".", "the repository root (the Dockerfile's build context)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: deployenv [-root DIR] FILE")
		os.Exit(2)
	}
	units, err := load(*root, flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "deployenv: %v\n", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(units); err != nil {
		fmt.Fprintf(os.Stderr, "deployenv: %v\n", err)
		os.Exit(1)
	}
}

func load(root, file string) ([]lint.Unit, error) {
	node, err := lint.ReadNode(root)
	if err != nil {
		return nil, err
	}
	img, errs := lint.CheckDockerfile(lint.BuildContext{
		Root:       root,
		Dockerfile: filepath.Join(root, "Dockerfile"),
		Ignore:     filepath.Join(root, ".dockerignore"),
	}, node)
	if img == nil {
		return nil, fmt.Errorf("Dockerfile: %v", errs)
	}
	base := filepath.Base(file)
	if strings.HasPrefix(base, "docker-compose") || strings.HasPrefix(base, "compose") {
		p, err := lint.LoadCompose(context.Background(), file)
		if err != nil {
			return nil, err
		}
		return lint.ComposeUnits(p, root, img), nil
	}
	m, err := lint.LoadManifests(file)
	if err != nil {
		return nil, err
	}
	return lint.PodUnits(m, img)
}
