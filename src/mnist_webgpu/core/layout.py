"""Where every artefact lives: the one definition writers and readers share.

    build/data/drawings.npz     drawings: digits and non-digits drawn as on the page (npz)
    build/models/<model>/       train:    weights.safetensors, misclassified.json, metrics.json (last)
    build/webgpu/<model>/       compile:  weights.<form>.safetensors, cpu.wasm, manifest.json (last)
    build/site/                 site:     the rendered site, before verify
    dist/                       verify:   the verified site, ready to publish
      models/<model>.html                 the model's page (SiteModel: the site's own URLs)
      models/<model>/                     its manifest.json, weight files and cpu.wasm, as compile wrote them
    build/sweep/optuna.db       sweep:    the default Optuna storage (any other is a URL)
    sweeps/results.json         sweep:    the committed record of every trial; HYPERPARAMETERS.md beside

Paths are relative to the project directory doit runs in (tests root them elsewhere).
Free of tinygrad, so doit can plan tasks without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
CPU_MODULE = "cpu.wasm"  # the CPU fallback's WebAssembly module, beside the manifest


def form_file(form: str) -> str:
    """The file one weight form ships as, beside its manifest."""
    return f"weights.{form}.safetensors"


SITE_MODELS = "models"  # the site's folder of model pages and shipped model files


@dataclass(frozen=True)
class SiteModel:
    """Where one model sits on the rendered site, as URLs relative to the site root. The same strings
    are paths under any site root (`dist / SiteModel(name).manifest`), so the site's writers and its
    readers (verify, the benches, the tests) cannot disagree on the scheme."""

    name: str

    @property
    def page(self) -> str:
        return f"{SITE_MODELS}/{self.name}.html"

    @property
    def folder(self) -> str:
        return f"{SITE_MODELS}/{self.name}"

    def file(self, file: str) -> str:
        """A file compile wrote beside the manifest, shipped as it is."""
        return f"{self.folder}/{file}"

    @property
    def manifest(self) -> str:
        return self.file(MANIFEST)

    def form(self, form: str) -> str:
        return self.file(form_file(form))

    def from_page(self, url: str) -> str:
        """One of this model's URLs as its own page links it: the page sits in the models folder."""
        return url.removeprefix(f"{SITE_MODELS}/")


def site_models(site: Path) -> list[SiteModel]:
    """The models a rendered site ships (each folder with a manifest), in order of name."""
    return [SiteModel(p.parent.name) for p in sorted((site / SITE_MODELS).glob(f"*/{MANIFEST}"))]


@dataclass(frozen=True)
class TrainOutputs:
    """What train:<model> writes, in the order it writes them: metrics last marks the set complete."""

    weights: Path
    misclassified: Path
    metrics: Path

    def all(self) -> list[Path]:
        return [self.weights, self.misclassified, self.metrics]


@dataclass(frozen=True)
class Layout:
    root: Path = Path(".")

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def drawings(self) -> Path:
        return self.build / "data" / "drawings.npz"

    def model_dir(self, model: str) -> Path:
        return self.build / "models" / model

    def train_outputs(self, model: str) -> TrainOutputs:
        out = self.model_dir(model)
        return TrainOutputs(out / "weights.safetensors", out / "misclassified.json", out / "metrics.json")

    def webgpu_dir(self, model: str) -> Path:
        return self.build / "webgpu" / model

    def manifest(self, model: str) -> Path:
        return self.webgpu_dir(model) / MANIFEST

    def compile_outputs(self, model: str, forms: tuple[str, ...]) -> list[Path]:
        """What compile:<model> writes: a file per weight form, the CPU module, then the manifest."""
        out = self.webgpu_dir(model)
        return [*(out / form_file(f) for f in forms), out / CPU_MODULE, self.manifest(model)]

    @property
    def site_staging(self) -> Path:
        return self.build / "site"

    @property
    def dist(self) -> Path:
        return self.root / "dist"

    @property
    def sweep_dir(self) -> Path:
        return self.build / "sweep"

    @property
    def sweep_db(self) -> Path:
        return self.sweep_dir / "optuna.db"

    @property
    def sweep_results(self) -> Path:
        """Committed, not built: `doit build` renders the sweep page from it without training."""
        return self.root / "sweeps" / "results.json"

    @property
    def sweep_report(self) -> Path:
        return self.root / "HYPERPARAMETERS.md"


PROJECT = Layout()  # the project directory doit runs in
