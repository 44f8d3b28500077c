package lint

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadCompose loads a compose file as `docker compose` does, validating it against the compose
// specification's schema and checking its consistency (undefined volumes, networks, services).
// The host environment is not consulted: the file must not depend on it. Nor are the env files
// read: they hold the join token, which is no part of the repository (ComposeUnits names them).
func LoadCompose(ctx context.Context, file string) (*types.Project, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs}},
		Environment: types.Mapping{},
	}
	p, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) { o.SkipResolveEnvironment = true })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return p, nil
}

// isNodeService reports whether a service runs the node image: it is built from the
// repository's Dockerfile.
func isNodeService(s types.ServiceConfig, root string) bool {
	if s.Build == nil {
		return false
	}
	abs, err := filepath.Abs(root)
	return err == nil && filepath.Clean(s.Build.Context) == abs &&
		(s.Build.Dockerfile == "" || s.Build.Dockerfile == "Dockerfile")
}

// ComposeUnits returns the services of p as units; node services get the image's environment
// under theirs. A node service's env_file is where its join token comes from (the image has no
// shell to read a compose secret's file into JOIN_TOKEN): the unit's Secrets name it.
func ComposeUnits(p *types.Project, root string, img *Image) []Unit {
	var units []Unit
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		u := Unit{Name: name, Node: isNodeService(s, root), Hostnames: []string{name}, Env: map[string]string{}}
		if s.Hostname != "" {
			u.Hostnames = append(u.Hostnames, s.Hostname)
		}
		for _, n := range s.Networks {
			if n != nil {
				u.Hostnames = append(u.Hostnames, n.Aliases...)
			}
		}
		if u.Node {
			for k, v := range img.Env {
				u.Env[k] = v
			}
		}
		for k, v := range s.Environment {
			if v != nil {
				u.Env[k] = *v
			}
		}
		if u.Node && len(s.EnvFiles) > 0 {
			u.Secrets = map[string]string{TokenVar: "env_file " + relPath(p.WorkingDir, s.EnvFiles[0].Path)}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume || v.Type == types.VolumeTypeBind {
				u.Mounts = append(u.Mounts, v.Target)
			}
		}
		if u.Node {
			for _, v := range img.Volumes {
				if !slices.Contains(u.Mounts, v) {
					// An anonymous volume: it survives a restart, not a `docker compose down`.
					u.Mounts = append(u.Mounts, v)
				}
			}
			if port, err := u.httpPort(); err == nil {
				u.Ports = []int{port}
			}
		}
		for _, e := range s.Expose {
			if n, err := strconv.Atoi(e); err == nil {
				u.Ports = append(u.Ports, n)
			}
		}
		u.Command = s.Command
		u.Ports = append(u.Ports, etcdCommandPorts(s.Command)...)
		u.DependsOn = slices.Sorted(maps.Keys(s.DependsOn))
		units = append(units, u)
	}
	return units
}

// relPath is path relative to dir when it is under dir, else path.
func relPath(dir, path string) string {
	if r, err := filepath.Rel(dir, path); err == nil && filepath.IsLocal(r) {
		return filepath.ToSlash(r)
	}
	return path
}

// etcdCommandPorts are the client ports an etcd command line advertises.
func etcdCommandPorts(cmd []string) []int {
	var ports []int
	for _, u := range etcdFlagURLs(cmd, "--advertise-client-urls") {
		if p, err := strconv.Atoi(u.Port()); err == nil {
			ports = append(ports, p)
		}
	}
	return ports
}

// etcdFlagURLs returns the URLs of an etcd flag (--flag=a,b or --flag a,b).
func etcdFlagURLs(cmd []string, flag string) []*url.URL {
	var out []*url.URL
	for i, a := range cmd {
		v, ok := strings.CutPrefix(a, flag+"=")
		if !ok && a == flag && i+1 < len(cmd) {
			v, ok = cmd[i+1], true
		}
		if !ok {
			continue
		}
		for _, s := range strings.Split(v, ",") {
			if u, err := url.Parse(strings.TrimSpace(s)); err == nil {
				out = append(out, u)
			}
		}
	}
	return out
}

// CheckCompose checks a loaded compose project: its units form a cluster (CheckUnits), node
// services probe their health with the image's probe (which speaks https by itself in secure
// mode), publish only their HTTP port, keep DATA_DIR on a volume of their own, wait for what
// they join and take the join token from one required env file; other services use pinned
// images.
func CheckCompose(file string, p *types.Project, root string, img *Image, node *Node) []error {
	units := ComposeUnits(p, root, img)
	errs := CheckUnits(file, units, node)
	fail := func(service, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", file, service, fmt.Sprintf(format, args...)))
	}
	published := map[string]string{}
	dataVolumes := map[string]string{}
	for _, u := range units {
		s := p.Services[u.Name]
		for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
			if s.Environment[k] == nil {
				fail(u.Name, "%s has no value: it would be taken from the host's environment", k)
			}
		}
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			key := port.HostIP + ":" + port.Published
			if other, ok := published[key]; ok {
				fail(u.Name, "publishes host port %s, as %s does", port.Published, other)
			}
			published[key] = u.Name
		}
		if !u.Node {
			if s.Image == "" {
				fail(u.Name, "no image")
			} else if msg := unpinned(s.Image); msg != "" {
				fail(u.Name, "image %s: %s", s.Image, msg)
			}
			continue
		}
		httpPort, err := u.httpPort()
		if err != nil {
			continue // reported by CheckUnits
		}
		client, peer := node.EtcdPorts(httpPort)
		for _, port := range s.Ports {
			switch int(port.Target) {
			case httpPort:
			case client, peer:
				fail(u.Name, "publishes the embedded etcd's port %d: only the nodes need it, keep it inside the network", port.Target)
			default:
				fail(u.Name, "publishes port %d, on which the node serves nothing (HTTP port %d)", port.Target, httpPort)
			}
		}
		if hc := s.HealthCheck; hc != nil && !hc.Disable {
			if want := []string{"CMD", img.Entrypoint[0], node.HealthCheckFlag}; !slices.Equal(hc.Test, want) {
				fail(u.Name, "healthcheck test %q: want %q (the image has no shell or curl)", hc.Test, want)
			}
		}
		switch {
		case len(s.EnvFiles) > 1:
			fail(u.Name, "%d env files: the one env file of a node holds %s=<token> and nothing else", len(s.EnvFiles), TokenVar)
		case len(s.EnvFiles) == 1 && !bool(s.EnvFiles[0].Required):
			fail(u.Name, "env_file %s is not required: without the file the node would start without %s, insecure", relPath(p.WorkingDir, s.EnvFiles[0].Path), TokenVar)
		}
		if s.StopSignal != "" && s.StopSignal != "SIGTERM" {
			fail(u.Name, "stop_signal %s: the node leaves gracefully on SIGTERM", s.StopSignal)
		}
		if u.Env["DRAIN_ON_SIGTERM"] == "true" {
			grace := 10 * time.Second // compose's default
			if s.StopGracePeriod != nil {
				grace = time.Duration(*s.StopGracePeriod)
			}
			if grace < node.DrainTimeout {
				fail(u.Name, "stop_grace_period %v is shorter than the drain's %v: the node would be killed mid-drain", grace, node.DrainTimeout)
			}
		}
		if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == u.Env["DATA_DIR"] }) {
			fail(u.Name, "DATA_DIR %s is only on the image's anonymous volume, which a new container does not get back: mount a named volume there", u.Env["DATA_DIR"])
		}
		for _, v := range s.Volumes {
			if v.Target != u.Env["DATA_DIR"] {
				continue
			}
			if v.Type != types.VolumeTypeVolume || v.Source == "" {
				fail(u.Name, "DATA_DIR %s is on a %s mount; use a named volume", v.Target, v.Type)
			} else if other, ok := dataVolumes[v.Source]; ok {
				fail(u.Name, "DATA_DIR is on volume %s, as is %s's: two nodes would share one data directory", v.Source, other)
			} else {
				dataVolumes[v.Source] = u.Name
			}
		}
		// What a node needs at start must be healthy first: the node it joins, its etcd.
		var needs []string
		if join := u.Env["JOIN_ADDR"]; join != "" && !u.embedded() {
			host, _, _ := splitHostPort(join)
			needs = append(needs, unitByHost(units, host))
		}
		for _, ep := range strings.Split(u.Env["ETCD_ENDPOINTS"], ",") {
			if parsed, err := url.Parse(strings.TrimSpace(ep)); err == nil && parsed.Hostname() != "" {
				needs = append(needs, unitByHost(units, parsed.Hostname()))
			}
		}
		for _, n := range needs {
			if n == "" {
				continue // reported by CheckUnits
			}
			if d, ok := s.DependsOn[n]; !ok || d.Condition != types.ServiceConditionHealthy {
				fail(u.Name, "needs %s at start: depend on it with condition service_healthy", n)
			}
		}
	}
	return errs
}

// unitByHost names the unit reached at host, "" for none.
func unitByHost(units []Unit, host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, u := range units {
		for _, h := range u.Hostnames {
			if strings.ToLower(h) == host {
				return u.Name
			}
		}
	}
	return ""
}
