"""Shows that deploy/check.py catches each kind of drift it exists for.

    python3 deploy/test_check.py

Each test copies the deploy folder (with the Dockerfile and .dockerignore it checks) into a
temporary repository, breaks one thing, and expects check.py to exit 1 with a FAIL line
about it. The copy has no target/, so `callout check` is skipped there.
"""

import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
CHECK = DEPLOY / "check.py"


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.deploy = self.tmp / "deploy"
        shutil.copytree(DEPLOY, self.deploy, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ["Dockerfile", ".dockerignore"]:
            shutil.copy(ROOT / name, self.tmp / name)

    def run_check(self):
        run = subprocess.run([sys.executable, str(self.deploy / "check.py"), str(self.deploy)],
                             capture_output=True, text=True, timeout=120)
        return run.returncode, run.stdout + run.stderr

    def edit(self, relative, change):
        """Applies `change` to every YAML document of a file, then writes it back."""
        path = self.deploy / relative
        docs = list(yaml.safe_load_all(path.read_text()))
        for doc in docs:
            change(doc)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def edit_deployment(self, change):
        def on_deployment(doc):
            if doc.get("kind") == "Deployment":
                change(doc["spec"]["template"]["spec"])
        self.edit("kubernetes/deployment.yaml", on_deployment)

    def assert_fails(self, *words):
        code, output = self.run_check()
        failures = [line for line in output.splitlines() if line.startswith("FAIL:")]
        self.assertEqual(code, 1, output)
        self.assertTrue(any(all(w in line for w in words) for line in failures),
                        f"no FAIL line with {words}:\n{output}")

    def test_the_unbroken_copy_passes(self):
        code, output = self.run_check()
        self.assertEqual(code, 0, output)
        self.assertNotIn("FAIL:", output)

    def test_probe_port_that_is_not_admin_listen(self):
        def change(spec):
            spec["initContainers"][0]["readinessProbe"]["httpGet"]["port"] = 7575
        self.edit_deployment(change)
        self.assert_fails("readinessProbe port 7575")

    def test_probe_path(self):
        def change(spec):
            spec["initContainers"][0]["livenessProbe"]["httpGet"]["path"] = "/healthz"
        self.edit_deployment(change)
        self.assert_fails("livenessProbe path '/healthz'")

    def test_secret_mounted_elsewhere(self):
        def change(spec):
            for mount in spec["initContainers"][0]["volumeMounts"]:
                if mount["name"] == "callout-secrets":
                    mount["mountPath"] = "/run/secrets/okta"
        self.edit_deployment(change)
        self.assert_fails("secret file /run/secrets/callout/okta-client-secret", "no volumeMount")

    def test_secret_without_the_key(self):
        def change(doc):
            doc["stringData"] = {"client-secret": doc["stringData"].pop("okta-client-secret")}
        self.edit("kubernetes/secret.yaml", change)
        self.assert_fails("Secret callout-okta", "no such key")

    def test_secret_readable_by_others(self):
        def change(spec):
            spec["volumes"][1]["secret"]["defaultMode"] = 0o444
        self.edit_deployment(change)
        self.assert_fails("mode 0444")

    def test_secret_unreadable_without_fs_group(self):
        self.edit_deployment(lambda spec: spec["securityContext"].pop("fsGroup"))
        self.assert_fails("cannot read it")

    def test_callout_as_a_plain_container(self):
        def change(spec):
            spec["containers"].insert(0, spec.pop("initContainers")[0])
            spec["containers"][0].pop("restartPolicy")
        self.edit_deployment(change)
        self.assert_fails("plain container")

    def test_init_container_that_is_not_a_sidecar(self):
        self.edit_deployment(lambda spec: spec["initContainers"][0].pop("restartPolicy"))
        self.assert_fails("restartPolicy: Always")

    def test_config_path_outside_the_config_map(self):
        def change(spec):
            spec["initContainers"][0]["env"][0]["value"] = "/etc/callout.toml"
        self.edit_deployment(change)
        self.assert_fails("/etc/callout.toml", "no volumeMount")

    def test_admin_port_missing_from_the_container(self):
        def change(doc):
            doc["data"]["callout.toml"] = doc["data"]["callout.toml"].replace(
                '"0.0.0.0:9090"', '"0.0.0.0:9091"')
        self.edit("kubernetes/configmap.yaml", change)
        self.assert_fails("admin_listen port 9091")

    def test_config_that_is_not_toml(self):
        def change(doc):
            doc["data"]["callout.toml"] += "\nlisten =\n"
        self.edit("kubernetes/configmap.yaml", change)
        self.assert_fails("is not valid TOML")

    def test_manifest_off_the_schema(self):
        def change(spec):
            spec["initContainers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
        self.edit_deployment(change)
        self.assert_fails("schema", "readOnlyRootFileSystem")

    def test_compose_port_on_every_interface(self):
        def change(doc):
            doc["services"]["callout"]["ports"] = ["7575:7575"]
        self.edit("compose.yaml", change)
        self.assert_fails("every interface")

    def test_compose_shell_healthcheck(self):
        def change(doc):
            doc["services"]["callout"]["healthcheck"]["test"] = "callout health"
        self.edit("compose.yaml", change)
        self.assert_fails("healthcheck")

    def test_compose_config_missing(self):
        (self.deploy / "compose" / "callout.toml").unlink()
        self.assert_fails("not a file in the repository")

    def test_dockerignore_that_drops_the_sources(self):
        (self.tmp / ".dockerignore").write_text("*\n!Cargo.toml\n!Cargo.lock\n")
        (self.tmp / "src").mkdir()
        (self.tmp / "src" / "main.rs").write_text("fn main() {}\n")
        self.assert_fails(".dockerignore drops", "src/main.rs")


if __name__ == "__main__":
    unittest.main()
