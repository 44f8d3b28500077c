package lint

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
)

// BuildContext is a Dockerfile and the build context it is built in.
type BuildContext struct {
	// Root is the build context: the repository root.
	Root string
	// Dockerfile is the Dockerfile's path.
	Dockerfile string
	// Ignore is the .dockerignore's path; "" for none.
	Ignore string
}

// Image is what the final stage of the Dockerfile gives the container.
type Image struct {
	// Env holds the ENV variables of the final stage.
	Env        map[string]string
	Exposed    []int
	User       string
	Volumes    []string
	Entrypoint []string
	// Health is the HEALTHCHECK test, for example ["CMD", "/bin/probe"].
	Health     []string
	StopSignal string
}

// CheckDockerfile parses the Dockerfile with BuildKit's parser, runs the checks of `docker build
// --check` on it (buildCheck) and checks it against the node: pinned base images, a static build of
// the node command from sources the context holds, a non-root user, the HTTP port and the
// embedded etcd ports exposed, a volume for DATA_DIR, a health check that needs no shell, no join
// token built in, and SIGTERM as the stop signal. It returns the image it describes and every problem found.
func CheckDockerfile(bc BuildContext, node *Node) (*Image, []error) {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", bc.Dockerfile, fmt.Sprintf(format, args...)))
	}
	src, err := os.ReadFile(bc.Dockerfile)
	if err != nil {
		return nil, []error{err}
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", bc.Dockerfile, err)}
	}
	for _, w := range res.Warnings {
		fail("line %d: %s", w.Location.Start.Line, w.Short)
	}
	warnings, err := buildCheck(src)
	if err != nil {
		return nil, append(errs, fmt.Errorf("%s: %w", bc.Dockerfile, err))
	}
	for _, w := range warnings {
		fail("%s", w)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, append(errs, fmt.Errorf("%s: %w", bc.Dockerfile, err))
	}
	if len(stages) == 0 {
		return nil, append(errs, fmt.Errorf("%s: no FROM", bc.Dockerfile))
	}

	// Base images: pinned to a version, and the Go builder on the module's Go release.
	goVersion, err := moduleGoVersion(bc.Root)
	if err != nil {
		errs = append(errs, err)
	}
	stageNames := map[string]bool{}
	for _, s := range stages {
		base := s.BaseName
		if !stageNames[strings.ToLower(base)] && base != "scratch" {
			if msg := unpinned(base); msg != "" {
				fail("FROM %s: %s", base, msg)
			}
			if repo, tag, ok := strings.Cut(base, ":"); ok && path.Base(repo) == "golang" && goVersion != "" &&
				!strings.HasPrefix(tag, goVersion) {
				fail("FROM %s: go.mod says go %s", base, goVersion)
			}
		}
		if s.Name != "" {
			stageNames[strings.ToLower(s.Name)] = true
		}
	}

	ignore, err := readIgnore(bc.Ignore)
	if err != nil {
		return nil, append(errs, err)
	}
	img := &Image{Env: map[string]string{}}
	final := stages[len(stages)-1]
	var build *instructions.RunCommand
	var buildStage, buildOut string
	var copied []string // context paths COPYed into any stage
	var finalCopies []*instructions.CopyCommand
	for si, s := range stages {
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.RunCommand:
				line := strings.Join(c.CmdLine, " ")
				if strings.Contains(line, "go build") && strings.Contains(line, "./"+NodeCommand) {
					build, buildStage = c, s.Name
					buildOut = flagValue(strings.Fields(line), "-o")
				}
			case *instructions.CopyCommand:
				if c.From == "" {
					copied = append(copied, c.SourcePaths...)
					for _, p := range c.SourcePaths {
						if err := checkContextPath(bc.Root, p, ignore); err != nil {
							fail("COPY %s: %v", p, err)
						}
					}
				}
				if si == len(stages)-1 {
					finalCopies = append(finalCopies, c)
				}
			}
			if si != len(stages)-1 {
				continue
			}
			switch c := c.(type) {
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					img.Env[kv.Key] = kv.Value
				}
			case *instructions.ExposeCommand:
				for _, p := range c.Ports {
					n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
					if err != nil {
						fail("EXPOSE %s: not a TCP port number", p)
						continue
					}
					img.Exposed = append(img.Exposed, n)
				}
			case *instructions.UserCommand:
				img.User = c.User
			case *instructions.VolumeCommand:
				img.Volumes = append(img.Volumes, c.Volumes...)
			case *instructions.EntrypointCommand:
				if c.PrependShell {
					fail("ENTRYPOINT in shell form: the node would not get SIGTERM itself (use the exec form [...])")
				}
				img.Entrypoint = c.CmdLine
			case *instructions.HealthCheckCommand:
				img.Health = c.Health.Test
			case *instructions.StopSignalCommand:
				img.StopSignal = c.Signal
			}
		}
	}

	// The node command, built statically, lands where the ENTRYPOINT runs it.
	switch {
	case build == nil:
		fail("no RUN go build ... ./%s", NodeCommand)
	default:
		if buildStage == final.Name || buildStage == "" {
			fail("the node is built in the final stage: build it in a builder stage and copy the binary")
		}
		if line := strings.Join(build.CmdLine, " "); !strings.Contains(line, "CGO_ENABLED=0") {
			fail("go build without CGO_ENABLED=0: the binary would need a C library at run time")
		}
		if buildOut == "" {
			fail("go build without -o: the binary's path is unknown")
		}
		if err := checkMainPackage(bc.Root); err != nil {
			fail("%v", err)
		}
		if err := checkBuildSources(bc.Root, copied, ignore); err != nil {
			fail("%v", err)
		}
	}
	if len(img.Entrypoint) == 0 {
		fail("no ENTRYPOINT")
	} else if buildOut != "" && !landsAt(finalCopies, buildStage, buildOut, img.Entrypoint[0]) {
		fail("ENTRYPOINT %s is not the binary built at %s in stage %q (COPY --from=%s %s %s)",
			img.Entrypoint[0], buildOut, buildStage, buildStage, buildOut, img.Entrypoint[0])
	}

	// Runs as a numeric non-root user: Kubernetes' runAsNonRoot can only verify a number.
	user, _, _ := strings.Cut(img.User, ":")
	if uid, err := strconv.Atoi(user); err != nil || uid == 0 {
		fail("USER %q: want a numeric user other than 0 in the final stage", img.User)
	}

	port, err := strconv.Atoi(img.Env["HTTP_PORT"])
	if err != nil {
		fail("the final stage sets no numeric ENV HTTP_PORT: the exposed ports and the health check depend on it")
	} else {
		client, peer := node.EtcdPorts(port)
		want := []int{port, client, peer}
		got := slices.Sorted(slices.Values(img.Exposed))
		if !slices.Equal(got, want) {
			fail("EXPOSE %v: want %v (HTTP_PORT %d, embedded etcd client +%d and peer +%d)",
				img.Exposed, want, port, node.EtcdPortOffset, 2*node.EtcdPortOffset)
		}
	}
	if dir := img.Env["DATA_DIR"]; dir == "" {
		fail("the final stage sets no ENV DATA_DIR: the node would keep its data in a temporary directory")
	} else if !slices.Contains(img.Volumes, dir) {
		fail("no VOLUME for DATA_DIR %s", dir)
	}
	if _, ok := img.Env[TokenVar]; ok {
		fail("ENV %s: a token built into the image is known to whoever pulls it, and the same in every cluster; give it to the container from a secret", TokenVar)
	}
	if len(img.Entrypoint) > 0 {
		if want := []string{"CMD", img.Entrypoint[0], node.HealthCheckFlag}; !slices.Equal(img.Health, want) {
			fail("HEALTHCHECK %q: want %q (exec form: the image has no shell)", img.Health, want)
		}
	}
	if img.StopSignal != "SIGTERM" {
		fail("STOPSIGNAL %q: want SIGTERM, on which the node leaves the cluster gracefully", img.StopSignal)
	}
	return img, errs
}

// buildCheck runs BuildKit's Dockerfile rules, those of `docker build --check`, and returns
// their warnings. Base images are not pulled: each resolves to an empty linux/amd64 image, so
// the rules that need an image's own configuration see none.
func buildCheck(src []byte) ([]string, error) {
	sm := llb.NewSourceMap(nil, "Dockerfile", "Dockerfile", src)
	sm.Definition = &llb.Definition{}
	res, err := dockerfile2llb.DockerfileLint(context.Background(), src, dockerfile2llb.ConvertOpt{
		MetaResolver: offlineImages{},
		SourceMap:    sm,
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, w := range res.Warnings {
		line := int32(0)
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = w.Location.Ranges[0].Start.Line
		}
		out = append(out, fmt.Sprintf("line %d: %s: %s", line, w.RuleName, w.Detail))
	}
	if res.Error != nil {
		out = append(out, res.Error.Message)
	}
	return out, nil
}

// offlineImages resolves every image reference to an empty linux/amd64 image without a
// registry.
type offlineImages struct{}

func (offlineImages) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{}}`)
	return ref, digest.FromBytes(cfg), cfg, nil
}

// unpinned says why an image reference is not pinned to a version, "" when it is.
func unpinned(ref string) string {
	if strings.Contains(ref, "$") {
		return "a variable: the image is not fixed"
	}
	if _, digest, ok := strings.Cut(ref, "@"); ok {
		if !strings.HasPrefix(digest, "sha256:") {
			return "digest is not sha256"
		}
		return ""
	}
	name := ref[strings.LastIndexByte(ref, '/')+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok:
		return "no tag: the newest image would be taken"
	case tag == "latest":
		return "tag latest: the newest image would be taken"
	}
	return ""
}

// moduleGoVersion is the major.minor Go release of go.mod's go line.
func moduleGoVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			parts := strings.SplitN(v, ".", 3)
			if len(parts) >= 2 {
				return parts[0] + "." + parts[1], nil
			}
		}
	}
	return "", fmt.Errorf("%s: no go line", filepath.Join(root, "go.mod"))
}

// readIgnore reads a .dockerignore; nil for none.
func readIgnore(file string) (*patternmatcher.PatternMatcher, error) {
	if file == "" {
		return nil, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return pm, nil
}

// ignored reports whether the context path rel (slash-separated) is left out of the build
// context.
func ignored(pm *patternmatcher.PatternMatcher, rel string) bool {
	if pm == nil || rel == "." {
		return false
	}
	m, err := pm.MatchesOrParentMatches(rel)
	return err == nil && m
}

// checkContextPath reports a COPY source that is not in the build context.
func checkContextPath(root, src string, ignore *patternmatcher.PatternMatcher) error {
	rel := path.Clean(strings.TrimPrefix(src, "/"))
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
		return fmt.Errorf("not in the repository: %v", err)
	}
	if ignored(ignore, rel) {
		return fmt.Errorf("left out of the build context by .dockerignore")
	}
	return nil
}

// checkMainPackage reports when the node command is not a main package.
func checkMainPackage(root string) error {
	b, err := os.ReadFile(filepath.Join(root, NodeCommand, "main.go"))
	if err != nil {
		return fmt.Errorf("the built package ./%s: %w", NodeCommand, err)
	}
	if !bytes.Contains(b, []byte("\npackage main\n")) {
		return fmt.Errorf("./%s is not a main package", NodeCommand)
	}
	return nil
}

// checkBuildSources reports a Go file the node command is built from that the image build
// would not have: outside every COPY, or left out by .dockerignore. The files are those `go
// list -deps` names inside the module.
func checkBuildSources(root string, copied []string, ignore *patternmatcher.PatternMatcher) error {
	needed, err := buildSources(root)
	if err != nil {
		return err
	}
	var missing []string
	for _, f := range needed {
		inCopy := slices.ContainsFunc(copied, func(src string) bool {
			src = path.Clean(strings.TrimPrefix(src, "/"))
			return src == "." || f == src || strings.HasPrefix(f, src+"/")
		})
		if !inCopy || ignored(ignore, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the build needs %d files that no COPY brings in or .dockerignore leaves out: %v", len(missing), missing)
	}
	return nil
}

// sourcesByRoot caches buildSources: go list takes a while and the answer does not change
// within a test run.
var sourcesByRoot sync.Map // absolute root -> []string

// buildSources lists the files of the repository at root that building the node command
// reads, slash-separated and relative to root.
func buildSources(root string) ([]string, error) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if v, ok := sourcesByRoot.Load(absRoot); ok {
		return v.([]string), nil
	}
	cmd := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{end}}`, "./"+NodeCommand)
	cmd.Dir = absRoot
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("go list -deps ./%s: %v %s", NodeCommand, err, stderr)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		rel, err := filepath.Rel(absRoot, fields[0])
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a dependency from the module cache
		}
		for _, f := range fields[1:] {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	sourcesByRoot.Store(absRoot, needed)
	return needed, nil
}

// flagValue returns the word after flag in words, "" when absent.
func flagValue(words []string, flag string) string {
	for i, w := range words {
		if w == flag && i+1 < len(words) {
			return words[i+1]
		}
	}
	return ""
}

// landsAt reports whether one of copies copies src from stage to the file dest.
func landsAt(copies []*instructions.CopyCommand, stage, src, dest string) bool {
	for _, c := range copies {
		if !strings.EqualFold(c.From, stage) || !slices.Contains(c.SourcePaths, src) {
			continue
		}
		if c.DestPath == dest || strings.HasSuffix(c.DestPath, "/") && c.DestPath+path.Base(src) == dest {
			return true
		}
	}
	return false
}
