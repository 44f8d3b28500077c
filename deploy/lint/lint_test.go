package lint

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// root is the repository root, seen from this package's directory.
const root = "../.."

// fixture is what every test reads once: the node's rules and the image.
func fixture(t *testing.T) (*Node, *Image) {
	t.Helper()
	node, err := ReadNode(root)
	if err != nil {
		t.Fatal(err)
	}
	img, errs := CheckDockerfile(repoBuildContext(), node)
	if len(errs) > 0 {
		t.Fatalf("the repository's Dockerfile: %v", errs)
	}
	return node, img
}

func repoBuildContext() BuildContext {
	return BuildContext{Root: root, Dockerfile: filepath.Join(root, "Dockerfile"), Ignore: filepath.Join(root, ".dockerignore")}
}

// The node's rules are read from its source: a change there changes what the files must say.
func TestReadNode(t *testing.T) {
	node, _ := fixture(t)
	for _, s := range []string{"NODE_ID", "HTTP_PORT", "JOIN_ADDR", "ADVERTISE_ADDR", "DATA_DIR", "ETCD_ENDPOINTS", "DRAIN_ON_SIGTERM", TokenVar} {
		if !node.Settings[s] {
			t.Errorf("setting %s not found in %s", s, NodeCommand)
		}
	}
	if c, p := node.EtcdPorts(8080); c != 18080 || p != 28080 {
		t.Errorf("embedded etcd ports of 8080: %d and %d, want 18080 and 28080", c, p)
	}
	if node.HealthCheckFlag != "-healthcheck" || node.DrainTimeout <= 0 {
		t.Errorf("health check flag %q, drain timeout %v", node.HealthCheckFlag, node.DrainTimeout)
	}
}

func TestDockerfile(t *testing.T) {
	node, img := fixture(t)
	if img.Env["HTTP_PORT"] != "8080" || img.Env["DATA_DIR"] != "/data" || img.Entrypoint[0] != "/usr/local/bin/clusterkit-node" {
		t.Errorf("image %+v", img)
	}
	src := readFile(t, filepath.Join(root, "Dockerfile"))
	ignore := readFile(t, filepath.Join(root, ".dockerignore"))
	tests := []struct {
		name          string
		old, new      string
		ignoreOld     string
		ignoreNew     string
		wantErrSubstr string
	}{
		{name: "unpinned builder", old: "FROM golang:1.26.8-bookworm AS build", new: "FROM golang AS build", wantErrSubstr: "FROM golang: no tag"},
		{name: "latest runtime", old: "static-debian12:nonroot", new: "static-debian12:latest", wantErrSubstr: "tag latest"},
		{name: "builder on another Go", old: "golang:1.26.8-bookworm", new: "golang:1.25-bookworm", wantErrSubstr: "go.mod says go 1.26"},
		{name: "root user", old: "USER 65532:65532", new: "USER root", wantErrSubstr: `USER "root"`},
		{name: "no user", old: "USER 65532:65532\n", new: "", wantErrSubstr: `USER ""`},
		{name: "etcd peer port not exposed", old: "EXPOSE 8080 18080 28080", new: "EXPOSE 8080 18080", wantErrSubstr: "want [8080 18080 28080]"},
		{name: "ports of another HTTP port", old: "HTTP_PORT=8080", new: "HTTP_PORT=9090", wantErrSubstr: "want [9090 19090 29090]"},
		{name: "token in the image", old: "    DATA_DIR=/data\n", new: "    DATA_DIR=/data \\\n    JOIN_TOKEN=e2e.0123456789abcdef0123456789\n", wantErrSubstr: "ENV JOIN_TOKEN: a token built into the image"},
		{name: "no volume", old: `VOLUME ["/data"]`, new: `VOLUME ["/var/data"]`, wantErrSubstr: "no VOLUME for DATA_DIR /data"},
		{name: "shell health check", old: `CMD ["/usr/local/bin/clusterkit-node", "-healthcheck"]`, new: "CMD curl -f localhost:8080/health", wantErrSubstr: "HEALTHCHECK"},
		{name: "stop signal", old: "STOPSIGNAL SIGTERM", new: "STOPSIGNAL SIGKILL", wantErrSubstr: `STOPSIGNAL "SIGKILL"`},
		{name: "shell entrypoint", old: `ENTRYPOINT ["/usr/local/bin/clusterkit-node"]`, new: "ENTRYPOINT /usr/local/bin/clusterkit-node", wantErrSubstr: "shell form"},
		{name: "cgo", old: "CGO_ENABLED=0 go build", new: "go build", wantErrSubstr: "CGO_ENABLED=0"},
		{name: "wrong package", old: "./cmd/clusterkit-node \\", new: "./cmd/clusterkit-server \\", wantErrSubstr: "no RUN go build"},
		{name: "binary copied elsewhere", old: "/out/clusterkit-node /usr/local/bin/clusterkit-node", new: "/out/clusterkit-node /usr/bin/clusterkit-node", wantErrSubstr: "ENTRYPOINT /usr/local/bin/clusterkit-node is not the binary"},
		{name: "a source directory not copied", old: "COPY internal/ internal/\n", new: "", wantErrSubstr: "no COPY brings in"},
		{name: "COPY of a missing path", old: "COPY pkg/ pkg/", new: "COPY pkg/ pkg/\nCOPY vendor/ vendor/", wantErrSubstr: "COPY vendor/: not in the repository"},
		{name: "a source directory ignored", ignoreOld: "!internal\n", ignoreNew: "", wantErrSubstr: "left out of the build context"},
		{name: "go.sum ignored", ignoreOld: "**/testdata", ignoreNew: "**/testdata\ngo.sum", wantErrSubstr: "go.sum"},
		// Rules of `docker build --check`.
		{name: "stage name casing", old: "AS build", new: "as build", wantErrSubstr: "FromAsCasing"},
		{name: "legacy ENV format", old: "ENV HTTP_PORT=8080 \\\n    DATA_DIR=/data", new: "ENV HTTP_PORT 8080\nENV DATA_DIR=/data", wantErrSubstr: "LegacyKeyValueFormat"},
		{name: "undefined variable", old: "VOLUME [\"/data\"]", new: "VOLUME [\"/data\"]\nWORKDIR $APP_HOME", wantErrSubstr: "UndefinedVar"},
		{name: "duplicate stage name", old: "FROM gcr.io/distroless/static-debian12:nonroot", new: "FROM gcr.io/distroless/static-debian12:nonroot AS build", wantErrSubstr: "DuplicateStageName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bc := BuildContext{Root: root, Dockerfile: filepath.Join(dir, "Dockerfile"), Ignore: filepath.Join(dir, ".dockerignore")}
			writeFile(t, bc.Dockerfile, replaceOnce(t, src, tt.old, tt.new))
			writeFile(t, bc.Ignore, replaceOnce(t, ignore, tt.ignoreOld, tt.ignoreNew))
			_, errs := CheckDockerfile(bc, node)
			expectError(t, errs, tt.wantErrSubstr)
		})
	}
}

func TestCompose(t *testing.T) {
	node, img := fixture(t)
	for _, f := range []string{"docker-compose.yml", "docker-compose.external-etcd.yml"} {
		p, err := LoadCompose(context.Background(), filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range CheckCompose(f, p, root, img, node) {
			t.Error(e)
		}
		units := ComposeUnits(p, root, img)
		nodes := 0
		for _, u := range units {
			if u.Node {
				nodes++
			}
		}
		if nodes != 3 {
			t.Errorf("%s: %d node services, want 3", f, nodes)
		}
	}

	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		file          string
		old, new      string
		wantErrSubstr string
	}{
		{name: "not the compose schema", old: "  restart: unless-stopped", new: "  restart: unless-stopped\n  restarts: 3", wantErrSubstr: "restarts"},
		{name: "undefined volume", old: "  node-3-data: {}\n", new: "", wantErrSubstr: "node-3-data"},
		{name: "typo in a variable", old: "      JOIN_ADDR: node-1:8080\n      DATA_DIR: /data\n    ports:\n      - \"8081", new: "      JOIN_ADRR: node-1:8080\n      DATA_DIR: /data\n    ports:\n      - \"8081", wantErrSubstr: "JOIN_ADRR is not a setting"},
		{name: "join a service that does not exist", old: "      JOIN_ADDR: node-1:8080\n      DATA_DIR: /data\n    ports:\n      - \"8081", new: "      JOIN_ADDR: node-0:8080\n      DATA_DIR: /data\n    ports:\n      - \"8081", wantErrSubstr: "JOIN_ADDR node-0:8080 names no unit"},
		{name: "join the wrong port", old: "      JOIN_ADDR: node-1:8080\n      DATA_DIR: /data\n    ports:\n      - \"8081", new: "      JOIN_ADDR: node-1:18080\n      DATA_DIR: /data\n    ports:\n      - \"8081", wantErrSubstr: "is not the HTTP port of node-1"},
		{name: "join a joiner", old: "      JOIN_ADDR: node-1:8080\n      DATA_DIR: /data\n    ports:\n      - \"8082", new: "      JOIN_ADDR: node-2:8080\n      DATA_DIR: /data\n    ports:\n      - \"8082", wantErrSubstr: "which joins another node itself"},
		{name: "two bootstrap nodes", old: "      JOIN_ADDR: node-1:8080\n      DATA_DIR: /data\n    ports:\n      - \"8082", new: "      DATA_DIR: /data\n    ports:\n      - \"8082", wantErrSubstr: "form separate clusters"},
		{name: "no advertise address", old: "      ADVERTISE_ADDR: node-2:8080\n", new: "", wantErrSubstr: "ADVERTISE_ADDR is not set"},
		{name: "advertise another service", old: "      ADVERTISE_ADDR: node-2:8080\n", new: "      ADVERTISE_ADDR: node-3:8080\n", wantErrSubstr: "does not name this unit"},
		{name: "advertise a loopback address", old: "      ADVERTISE_ADDR: node-2:8080\n", new: "      ADVERTISE_ADDR: 127.0.0.1:8080\n", wantErrSubstr: "does not name this unit"},
		{name: "duplicate node ID", old: "      NODE_ID: node-3\n", new: "      NODE_ID: node-2\n", wantErrSubstr: `NODE_ID "node-2" is also the ID of node-2`},
		{name: "data dir not on the volume", old: "      - node-2-data:/data\n", new: "      - node-2-data:/var/lib/node\n", wantErrSubstr: "only on the image's anonymous volume"},
		{name: "shared data volume", old: "      - node-2-data:/data\n", new: "      - node-1-data:/data\n", wantErrSubstr: "two nodes would share"},
		{name: "etcd port published", old: "      - \"8082:8080\"\n", new: "      - \"8082:8080\"\n      - \"18082:18080\"\n", wantErrSubstr: "publishes the embedded etcd's port 18080"},
		{name: "host port taken twice", old: "      - \"8082:8080\"\n", new: "      - \"8081:8080\"\n", wantErrSubstr: "publishes host port 8081, as node-2 does"},
		{name: "no wait for the bootstrap node", old: "    depends_on:\n      node-1:\n        condition: service_healthy\n\n  node-3", new: "\n  node-3", wantErrSubstr: "needs node-1 at start"},
		{name: "wait only for start", old: "        condition: service_healthy\n\n  node-3", new: "        condition: service_started\n\n  node-3", wantErrSubstr: "condition service_healthy"},
		{name: "shell health check", old: `    test: ["CMD", "/usr/local/bin/clusterkit-node", "-healthcheck"]`, new: `    test: curl -f http://localhost:8080/health`, wantErrSubstr: "healthcheck test"},
		{name: "value from the host", old: "      NODE_ID: node-3\n", new: "      NODE_ID: node-3\n      ZONE:\n", wantErrSubstr: "ZONE has no value"},
		{name: "drain longer than the grace period", old: "      NODE_ID: node-3\n", new: "      NODE_ID: node-3\n      DRAIN_ON_SIGTERM: \"true\"\n", wantErrSubstr: "killed mid-drain"},
		// The join token: from the env file only, required, the same for every node.
		{name: "token written in the file", old: "      NODE_ID: node-2\n", new: "      NODE_ID: node-2\n      JOIN_TOKEN: e2e.0123456789abcdef0123456789\n", wantErrSubstr: "JOIN_TOKEN is set in the file"},
		{name: "token from the host's environment", old: "      NODE_ID: node-2\n", new: "      NODE_ID: node-2\n      JOIN_TOKEN: ${JOIN_TOKEN}\n", wantErrSubstr: "JOIN_TOKEN is set in the file"},
		{name: "no token: insecure", old: "  env_file:\n    - path: deploy/join-token.env\n      required: true\n", new: "", wantErrSubstr: "no JOIN_TOKEN: on the embedded etcd the node would run insecure"},
		{name: "token file optional", old: "      required: true\n", new: "      required: false\n", wantErrSubstr: "env_file deploy/join-token.env is not required"},
		{name: "two env files", old: "      required: true\n", new: "      required: true\n    - path: deploy/settings.env\n", wantErrSubstr: "2 env files"},
		{name: "another token for one node", old: "  node-3:\n    <<: *node\n", new: "  node-3:\n    <<: *node\n    env_file: deploy/node-3-token.env\n", wantErrSubstr: "from different secrets"},
		{name: "token beside TLS settings", old: "      NODE_ID: node-3\n", new: "      NODE_ID: node-3\n      TLS_CERT_FILE: /data/tls.crt\n", wantErrSubstr: "JOIN_TOKEN with TLS_CERT_FILE: the node refuses that"},
		{name: "token with an external etcd", file: "docker-compose.external-etcd.yml", old: "  restart: unless-stopped\n", new: "  restart: unless-stopped\n  env_file: deploy/join-token.env\n", wantErrSubstr: "JOIN_TOKEN with ETCD_ENDPOINTS: the node refuses that"},
		{name: "both endpoints and join", file: "docker-compose.external-etcd.yml", old: "      ETCD_ENDPOINTS: http://etcd:2379\n      DATA_DIR: /data\n    ports:\n      - \"8082", new: "      ETCD_ENDPOINTS: http://etcd:2379\n      JOIN_ADDR: node-1:8080\n      DATA_DIR: /data\n    ports:\n      - \"8082", wantErrSubstr: "both JOIN_ADDR and ETCD_ENDPOINTS"},
		{name: "endpoint of no service", file: "docker-compose.external-etcd.yml", old: "      ETCD_ENDPOINTS: http://etcd:2379\n      DATA_DIR: /data\n    ports:\n      - \"8082", new: "      ETCD_ENDPOINTS: http://etcd-1:2379\n      DATA_DIR: /data\n    ports:\n      - \"8082", wantErrSubstr: "http://etcd-1:2379 names no unit"},
		{name: "endpoint on the peer port", file: "docker-compose.external-etcd.yml", old: "      ETCD_ENDPOINTS: http://etcd:2379\n      DATA_DIR: /data\n    ports:\n      - \"8082", new: "      ETCD_ENDPOINTS: http://etcd:2380\n      DATA_DIR: /data\n    ports:\n      - \"8082", wantErrSubstr: "serves no etcd on port 2380"},
		{name: "etcd advertises another name", file: "docker-compose.external-etcd.yml", old: "--advertise-client-urls=http://etcd:2379", new: "--advertise-client-urls=http://localhost:2379", wantErrSubstr: "is not among etcd's --advertise-client-urls"},
		{name: "etcd image unpinned", file: "docker-compose.external-etcd.yml", old: "etcd:v3.7.3", new: "etcd:latest", wantErrSubstr: "tag latest"},
		{name: "etcd data not on a volume", file: "docker-compose.external-etcd.yml", old: "--data-dir=/var/lib/etcd/data", new: "--data-dir=/etcd-data", wantErrSubstr: "is not on a volume"},
		{name: "no wait for etcd", file: "docker-compose.external-etcd.yml", old: "  depends_on:\n    etcd:\n      condition: service_healthy\n", new: "", wantErrSubstr: "needs etcd at start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.file == "" {
				tt.file = "docker-compose.yml"
			}
			src := readFile(t, filepath.Join(root, tt.file))
			// The copy lives elsewhere: its build context must still be the repository.
			src = strings.ReplaceAll(src, "    context: .\n", "    context: "+abs+"\n")
			path := filepath.Join(t.TempDir(), tt.file)
			writeFile(t, path, replaceOnce(t, src, tt.old, tt.new))
			p, err := LoadCompose(context.Background(), path)
			if err != nil {
				expectError(t, []error{err}, tt.wantErrSubstr)
				return
			}
			expectError(t, CheckCompose(tt.file, p, root, img, node), tt.wantErrSubstr)
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceOnce replaces old, which must occur in s, by new; an empty old leaves s as it is.
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if old == "" {
		return s
	}
	if !strings.Contains(s, old) {
		t.Fatalf("the file no longer contains %q: update the test", old)
	}
	return strings.Replace(s, old, new, 1)
}

// expectError fails unless one of errs mentions want.
func expectError(t *testing.T, errs []error, want string) {
	t.Helper()
	for _, err := range errs {
		if strings.Contains(err.Error(), want) {
			t.Logf("found: %v", err)
			return
		}
	}
	t.Errorf("no error mentions %q; got %d: %v", want, len(errs), errs)
}

func TestManifests(t *testing.T) {
	node, img := fixture(t)
	for _, f := range []string{"clusterkit.yaml", "clusterkit-external-etcd.yaml"} {
		m, err := LoadManifests(filepath.Join(root, "deploy", "k8s", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range CheckManifests(m, img, node) {
			t.Error(e)
		}
		units, err := PodUnits(m, img)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range units {
			t.Logf("%s: %v %v", u.Name, u.Env, u.Hostnames[0])
		}
	}
}

func TestManifestsBroken(t *testing.T) {
	node, img := fixture(t)
	const embedded, external = "clusterkit.yaml", "clusterkit-external-etcd.yaml"
	tests := []struct {
		name          string
		file          string
		old, new      string
		wantErrSubstr string
	}{
		{name: "unknown field", old: "  serviceName: clusterkit-headless", new: "  serviceName: clusterkit-headless\n  servicename: x", wantErrSubstr: `unknown field "spec.servicename"`},
		{name: "field at the wrong level", old: "      terminationGracePeriodSeconds: 90", new: "      terminationGracePeriod: 90", wantErrSubstr: "unknown field"},
		{name: "wrong type", old: "  replicas: 3", new: "  replicas: three", wantErrSubstr: "StatefulSet"},
		{name: "duplicate field", old: "  replicas: 3", new: "  replicas: 3\n  replicas: 5", wantErrSubstr: "replicas"},
		{name: "unused kind", old: "apiVersion: policy/v1\nkind: PodDisruptionBudget", new: "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget", wantErrSubstr: `kind "PodDisruptionBudget" of "policy/v1beta1"`},
		{name: "serviceName of no Service", old: "  serviceName: clusterkit-headless", new: "  serviceName: clusterkit-pods", wantErrSubstr: `serviceName "clusterkit-pods" names no Service`},
		{name: "serviceName not headless", old: "  serviceName: clusterkit-headless", new: "  serviceName: clusterkit", wantErrSubstr: "is not a headless Service"},
		{name: "advertise another pattern", old: "              value: $(NODE_ID).clusterkit-headless.$(POD_NAMESPACE).svc.cluster.local:8080", new: "              value: $(NODE_ID).clusterkit.$(POD_NAMESPACE).svc.cluster.local:8080", wantErrSubstr: "advertises"},
		{name: "advertise the pod IP's port wrong", old: "svc.cluster.local:8080\n            # Pod 0", new: "svc.cluster.local:9090\n            # Pod 0", wantErrSubstr: "does not name this unit"},
		{name: "join a pod that does not exist", old: "              value: clusterkit-0.clusterkit-headless", new: "              value: clusterkit-3.clusterkit-headless", wantErrSubstr: "names no unit"},
		{name: "join through the client Service", old: "              value: clusterkit-0.clusterkit-headless.$(POD_NAMESPACE).svc.cluster.local:8080", new: "              value: clusterkit.$(POD_NAMESPACE).svc.cluster.local:8080", wantErrSubstr: "which is not a node"},
		{name: "join with a short name", old: "              value: clusterkit-0.clusterkit-headless.$(POD_NAMESPACE).svc.cluster.local:8080", new: "              value: clusterkit-0.clusterkit-headless:8080", wantErrSubstr: "the node would not recognise itself"},
		{name: "no join: every pod bootstraps", old: "            - name: JOIN_ADDR\n              value: clusterkit-0.clusterkit-headless.$(POD_NAMESPACE).svc.cluster.local:8080\n", new: "", wantErrSubstr: "form separate clusters"},
		{name: "node ID not from the pod", old: "            - name: NODE_ID\n              valueFrom:\n                fieldRef:\n                  fieldPath: metadata.name", new: "            - name: NODE_ID\n              value: clusterkit", wantErrSubstr: "NODE_ID must come from the pod's name"},
		{name: "unsupported value source", old: "                  fieldPath: metadata.namespace", new: "                  fieldPath: status.podIP", wantErrSubstr: "only values, secretKeyRef and fieldRef"},
		{name: "typo in a variable", old: "            - name: DATA_DIR\n", new: "            - name: DATADIR\n", wantErrSubstr: "DATADIR is not a setting"},
		{name: "DNS only once ready", old: "  publishNotReadyAddresses: true\n", new: "", wantErrSubstr: "publishNotReadyAddresses"},
		{name: "data on the container's disk", old: "          volumeMounts:\n            - name: data\n              mountPath: /data", new: "          volumeMounts:\n            - name: data\n              mountPath: /var/lib/clusterkit", wantErrSubstr: "DATA_DIR /data is not on a persistent volume"},
		{name: "probe of another path", old: "          readinessProbe:\n            httpGet:\n              path: /health", new: "          readinessProbe:\n            httpGet:\n              path: /healthz", wantErrSubstr: "readinessProbe: want httpGet /health"},
		{name: "no liveness probe", old: "          livenessProbe:\n            httpGet:\n              path: /health\n              port: http\n              scheme: HTTPS\n            periodSeconds: 10\n            failureThreshold: 30\n", new: "", wantErrSubstr: "no livenessProbe"},
		{name: "grace shorter than the drain", old: "terminationGracePeriodSeconds: 90", new: "terminationGracePeriodSeconds: 30", wantErrSubstr: "would be killed before it is done"},
		{name: "root", old: "        runAsNonRoot: true\n", new: "", wantErrSubstr: "runAsNonRoot is not set"},
		{name: "another user", old: "        runAsUser: 65532", new: "        runAsUser: 1000", wantErrSubstr: "is not the image's user 65532"},
		{name: "no fsGroup", old: "        fsGroup: 65532\n", new: "", wantErrSubstr: "no fsGroup"},
		{name: "http port mismatch", old: "            - name: http\n              containerPort: 8080", new: "            - name: http\n              containerPort: 8081", wantErrSubstr: "container port http is 8081"},
		{name: "unpinned image", old: "image: clusterkit-node:0.1.0", new: "image: clusterkit-node", wantErrSubstr: "no tag"},
		{name: "selector mismatch", old: "  selector:\n    matchLabels:\n      app.kubernetes.io/name: clusterkit\n  template:", new: "  selector:\n    matchLabels:\n      app: clusterkit\n  template:", wantErrSubstr: "selector does not match"},
		{name: "no client Service", old: "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: clusterkit", new: "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: other", wantErrSubstr: "no Service (other than the headless one)"},
		{name: "embedded etcd on a node port", old: "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: clusterkit\n  ports:\n    - name: http\n      port: 8080\n      targetPort: http", new: "  type: NodePort\n  selector:\n    app.kubernetes.io/name: clusterkit\n  ports:\n    - name: http\n      port: 8080\n      targetPort: http\n    - name: etcd\n      port: 18080\n      targetPort: etcd-client", wantErrSubstr: "exposes the embedded etcd"},
		// The join token: from a Secret apart from the file, never optional; probes over https.
		{name: "token as a value", old: "              valueFrom:\n                secretKeyRef:\n                  name: clusterkit-join-token\n                  key: token\n", new: "              value: e2e.0123456789abcdef0123456789\n", wantErrSubstr: "JOIN_TOKEN is set in the file"},
		{name: "no token: insecure", old: "            - name: JOIN_TOKEN\n              valueFrom:\n                secretKeyRef:\n                  name: clusterkit-join-token\n                  key: token\n", new: "", wantErrSubstr: "no JOIN_TOKEN: on the embedded etcd the node would run insecure"},
		{name: "token Secret optional", old: "                  key: token\n", new: "                  key: token\n                  optional: true\n", wantErrSubstr: "secretKeyRef is optional"},
		{name: "Secret in the file", old: "---\n# Clients:", new: "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: clusterkit-join-token\nstringData:\n  token: e2e.0123456789abcdef0123456789\n---\n# Clients:", wantErrSubstr: "a Secret in the file"},
		{name: "readiness probe over HTTP", old: "              port: http\n              scheme: HTTPS\n            periodSeconds: 5\n", new: "              port: http\n            periodSeconds: 5\n", wantErrSubstr: "readinessProbe: scheme HTTP, but the node serves https only"},
		{name: "startup probe over HTTP", old: "              port: http\n              scheme: HTTPS\n            periodSeconds: 2\n", new: "              port: http\n              scheme: HTTP\n            periodSeconds: 2\n", wantErrSubstr: "startupProbe: scheme HTTP, but the node serves https only"},
		{name: "HTTPS probe of a plain HTTP node", file: external, old: "              port: http\n            periodSeconds: 10\n", new: "              port: http\n              scheme: HTTPS\n            periodSeconds: 10\n", wantErrSubstr: "livenessProbe: scheme HTTPS, but the node serves plain HTTP"},
		{name: "token with an external etcd", file: external, old: "            - name: DATA_DIR\n", new: "            - name: JOIN_TOKEN\n              valueFrom:\n                secretKeyRef:\n                  name: clusterkit-join-token\n                  key: token\n            - name: DATA_DIR\n", wantErrSubstr: "JOIN_TOKEN with ETCD_ENDPOINTS: the node refuses that"},
		// The NetworkPolicy: etcd ports from the StatefulSet's pods only, the API from anywhere.
		{name: "no NetworkPolicy", old: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: clusterkit-etcd\nspec:\n  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: clusterkit\n", new: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: clusterkit-etcd\nspec:\n  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: other\n", wantErrSubstr: "no NetworkPolicy restricts ingress to the pods"},
		{name: "NetworkPolicy for egress only", old: `  policyTypes: ["Ingress"]`, new: `  policyTypes: ["Egress"]`, wantErrSubstr: "no NetworkPolicy restricts ingress to the pods"},
		{name: "etcd open to every source", old: "    - from:\n        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: clusterkit\n      ports:\n        - port: etcd-client", new: "    - ports:\n        - port: etcd-client", wantErrSubstr: "admits every source to the embedded etcd's port 18080"},
		{name: "etcd open to another namespace", old: "        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: clusterkit\n      ports:", new: "        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: clusterkit\n          namespaceSelector: {}\n      ports:", wantErrSubstr: "admits pods of other namespaces to the embedded etcd's port 18080"},
		{name: "etcd open to an address block", old: "      ports:\n        - port: etcd-client", new: "        - ipBlock:\n            cidr: 10.0.0.0/8\n      ports:\n        - port: etcd-client", wantErrSubstr: "admits ipBlock 10.0.0.0/8 to the embedded etcd's port 18080"},
		{name: "etcd open to other pods", old: "        - podSelector:\n            matchLabels:\n              app.kubernetes.io/name: clusterkit\n      ports:", new: "        - podSelector:\n            matchLabels:\n              role: client\n      ports:", wantErrSubstr: "admits pods other than the StatefulSet's to the embedded etcd's port 28080"},
		{name: "etcd peer port closed to the members", old: "        - port: etcd-peer\n", new: "", wantErrSubstr: "no NetworkPolicy rule admits the StatefulSet's pods to the embedded etcd's port 28080"},
		{name: "etcd client port by a wrong number", old: "        - port: etcd-client\n", new: "        - port: 18081\n", wantErrSubstr: "no NetworkPolicy rule admits the StatefulSet's pods to the embedded etcd's port 18080"},
		{name: "API closed to clients", old: "    - ports:\n        - port: http\n", new: "", wantErrSubstr: "no NetworkPolicy rule admits every source to the HTTP API port 8080"},
		{name: "endpoint of no etcd pod", file: external, old: "2379,http://etcd-2.etcd.$(POD_NAMESPACE)", new: "2379,http://etcd-3.etcd.$(POD_NAMESPACE)", wantErrSubstr: "names no unit"},
		{name: "endpoint on the peer port", file: external, old: "value: http://etcd-0.etcd.$(POD_NAMESPACE).svc.cluster.local:2379", new: "value: http://etcd-0.etcd.$(POD_NAMESPACE).svc.cluster.local:2380", wantErrSubstr: "ETCD_ENDPOINTS http://etcd-0.etcd.default.svc.cluster.local:2380 is not among etcd-0's"},
		{name: "etcd advertises another name", file: external, old: "--advertise-client-urls=http://$(POD_NAME).etcd.", new: "--advertise-client-urls=http://$(POD_NAME).etcd-headless.", wantErrSubstr: "is not among etcd-0's --advertise-client-urls"},
		{name: "etcd data not on its claim", file: external, old: "--data-dir=/var/lib/etcd/data", new: "--data-dir=/data", wantErrSubstr: "is not on a volume"},
		{name: "etcd image unpinned", file: external, old: "etcd:v3.7.3", new: "etcd:latest", wantErrSubstr: "tag latest"},
		{name: "endpoints and join", file: external, old: "            - name: DATA_DIR\n", new: "            - name: JOIN_ADDR\n              value: clusterkit-0.clusterkit-headless.$(POD_NAMESPACE).svc.cluster.local:8080\n            - name: DATA_DIR\n", wantErrSubstr: "both JOIN_ADDR and ETCD_ENDPOINTS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.file == "" {
				tt.file = embedded
			}
			src := readFile(t, filepath.Join(root, "deploy", "k8s", tt.file))
			path := filepath.Join(t.TempDir(), tt.file)
			writeFile(t, path, replaceOnce(t, src, tt.old, tt.new))
			m, err := LoadManifests(path)
			if err != nil {
				expectError(t, []error{err}, tt.wantErrSubstr)
				return
			}
			expectError(t, CheckManifests(m, img, node), tt.wantErrSubstr)
		})
	}
}
