"""The run configuration: one YAML file loaded into a frozen dataclass tree (see README for every key)."""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flow.errors import FlowError
from flow.schema import ABSENT, IDENTIFIER, build, identifier, rng, to_plain


class DataName(enum.StrEnum):
    DIGITS = "digits"
    SYNTHETIC = "synthetic"
    NPZ = "npz"
    MNIST = "mnist"
    FASHION_MNIST = "fashion_mnist"
    CIFAR10 = "cifar10"


class ZooName(enum.StrEnum):
    LENET = "lenet"
    VGG_TINY = "vgg_tiny"
    RESNET_TINY = "resnet_tiny"
    RESNET8 = "resnet8"  # MLPerf Tiny image classification (without BatchNorm)
    MLP = "mlp"


class Optimizer(enum.StrEnum):
    ADAM = "adam"
    SGD = "sgd"


class Backend(enum.StrEnum):
    VIVADO = "Vivado"
    VITIS = "Vitis"


class IOType(enum.StrEnum):
    PARALLEL = "io_parallel"
    STREAM = "io_stream"


class OptLevel(enum.StrEnum):
    O0 = "O0"
    O1 = "O1"
    O2 = "O2"
    O3 = "O3"


class Strategy(enum.StrEnum):
    LATENCY = "Latency"
    RESOURCE = "Resource"


@dataclass(frozen=True)
class DataConfig:
    name: DataName = DataName.DIGITS  # which data source
    path: str | None = None  # the .npz file for name: npz (keys x_train, y_train, x_test, y_test)
    cache_dir: str | None = None  # download cache for keras.datasets (default ~/.keras or $KERAS_HOME)
    test_fraction: float = field(default=0.25, metadata=rng(0, 1, min_exclusive=True, max_exclusive=True))
    val_fraction: float = field(default=0.1, metadata=rng(0, 1, max_exclusive=True))  # of train, for validation
    n_train: int | None = field(default=None, metadata=rng(1))  # keep at most this many training samples
    n_test: int | None = field(default=None, metadata=rng(1))  # keep at most this many test samples
    input_frac_bits: int = field(default=8, metadata=rng(1, 16))  # inputs rounded to multiples of 2^-bits
    shape: tuple[int, ...] = (16, 16, 1)  # synthetic only: sample shape, [F] features or [H, W, C] images
    classes: int = field(default=10, metadata=rng(2, 1000))  # synthetic only: number of classes
    samples: int = field(default=1000, metadata=rng(10))  # synthetic only: total number of samples


MAX_INPUT_SIZE = 4096  # per dimension of model.input_shape


@dataclass(frozen=True)
class ModelConfig:
    name: ZooName | None = ZooName.LENET  # zoo architecture (ignored when path is given)
    path: str | None = None  # a saved QKeras model (.h5 / .keras / SavedModel directory) instead of the zoo
    json: str | None = None  # or hls4ml's pair: the architecture JSON (model.to_json()) ...
    weights: str | None = None  # ... and its weights (.h5 from model.save_weights)
    # H, W, C (or F for a flat mlp input); null = the data's shape
    input_shape: tuple[int, ...] | None = field(default=None, metadata=rng(1, MAX_INPUT_SIZE))
    filters: tuple[int, ...] | None = None  # conv filters per conv layer; null = the zoo default
    dense_units: int = field(default=16, metadata=rng(1, 4096))  # hidden dense width (lenet)
    # mlp only: width of each hidden QDense layer (fc1, fc2, ...; one or more); null = 64, 32, 32 (jet tagging)
    hidden_units: tuple[int, ...] | None = field(default=None, metadata=rng(1, 4096))
    weight_bits: int = field(default=6, metadata=rng(2, 16))  # weight and bias width (quantized_bits)
    weight_int_bits: int = field(default=0, metadata=rng(0, 8))  # integer bits of weights (besides sign)
    act_bits: int = field(default=6, metadata=rng(2, 16))  # activation width (quantized_relu)
    act_int_bits: int = field(default=2, metadata=rng(0, 8))  # integer bits of activations

    def __post_init__(self) -> None:
        shape = self.input_shape
        if shape is None or self.path or self.json or self.name is None:
            return
        if self.name is ZooName.MLP and len(shape) not in (1, 3):
            raise FlowError(f"input_shape: got {list(shape)}; mlp takes [F] features or [H, W, C] images")
        if self.name is not ZooName.MLP and len(shape) != 3:
            raise FlowError(
                f"input_shape: got {list(shape)}; {self.name.value} takes an image shape [H, W, C] (3 integers "
                "from 1); for flat features [F] use model.name: mlp"
            )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=10, metadata=rng(0, 10000))  # 0 keeps the initial (or loaded) weights
    batch_size: int = field(default=32, metadata=rng(1, 65536))
    learning_rate: float = field(default=0.003, metadata=rng(0, 10, min_exclusive=True))
    optimizer: Optimizer = Optimizer.ADAM


@dataclass(frozen=True)
class LayerOverride:
    precision: dict[str, str] = field(default_factory=dict)  # e.g. {result: "fixed<16,6>", accum: ...}
    reuse_factor: int | None = field(default=None, metadata=rng(1))
    strategy: Strategy | None = None


@dataclass(frozen=True)
class HlsConfig:
    backend: Backend = Backend.VIVADO
    io_type: IOType = IOType.PARALLEL
    strategy: Strategy = Strategy.LATENCY
    reuse_factor: int = field(default=1, metadata=rng(1, 4096))
    default_precision: str = "fixed<16,6>"  # for layers whose precision QKeras does not fix
    input_precision: str | None = None  # null = exactly the data grid: ufixed<input_frac_bits+1, 1>
    project_name: str = field(default="myproject", metadata=identifier())  # top function, file names
    csim_opt: OptLevel = OptLevel.O3  # g++ level of the C-sim library (io_parallel im2col code: always -O0)
    csim_cache: bool = True  # reuse compiled C-sim code from $FTFLOW_CACHE/csim (~/.cache/ftflow/csim)
    layers: dict[str, LayerOverride] = field(default_factory=dict)  # per-layer overrides by layer name
    # also write convert/hls_project_ip: the project with the softmax/sigmoid head that load stripped, for export
    # (campaigns and verify always use the logits)
    keep_softmax: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(IDENTIFIER, self.project_name):
            raise FlowError(
                f"project_name: got {self.project_name!r}; allowed: a letter or _, then letters, digits or _ "
                "(it names the top function, files and the build script's target)"
            )


@dataclass(frozen=True)
class BoardConfig:
    name: str | None = None  # a file boards/<name>.yaml; default pynq-z2 when no part is given
    part: str | None = None  # a raw FPGA part instead of a named board
    clock_period: float | None = field(default=None, metadata=rng(0, None, min_exclusive=True))  # ns


@dataclass(frozen=True)
class VerifyConfig:
    n_samples: int | None = field(default=None, metadata=rng(1))  # null = the whole test set
    trace_samples: int = field(default=8, metadata=rng(1, 10000))  # samples traced per layer on a mismatch
    require_bit_exact: bool = True  # fail the run when C-sim differs from QKeras


class RankMethod(enum.StrEnum):
    L1 = "l1"
    L2 = "l2"
    GRADIENT = "gradient"
    FIRST_ORDER = "first_order"
    TAYLOR = "taylor"
    FI = "fi"


class Split(enum.StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class Sampling(enum.StrEnum):
    STATISTICAL = "statistical"
    EXHAUSTIVE = "exhaustive"


@dataclass(frozen=True)
class RankConfig:
    method: RankMethod = RankMethod.GRADIENT  # the ranking later steps use
    images: int = field(default=100, metadata=rng(1))  # images scored by gradient, first_order, taylor and fi
    split: Split = Split.TEST  # where those images come from (the first `images` of it)
    compare: bool = False  # also compute every method and validate each against fi (rank/validation.json)
    fi_sampling: Sampling = Sampling.STATISTICAL  # per channel: Leveugle sample of its bits, or all of them
    fi_margin: float = field(default=0.05, metadata=rng(0, 1, min_exclusive=True, max_exclusive=True))
    fi_confidence: float = field(default=0.95, metadata=rng(0, 1, min_exclusive=True, max_exclusive=True))
    fi_p: float = field(default=0.5, metadata=rng(0, 1, min_exclusive=True, max_exclusive=True))


class PruneCriterion(enum.StrEnum):
    VULNERABILITY = "vulnerability"  # the rank step's ranking: least vulnerable pruned first
    L1 = "l1"  # filter norm (the conventional baseline)


class PruneScope(enum.StrEnum):
    LAYER = "layer"  # int(C * ratio) channels of every prunable layer
    GLOBAL = "global"  # the lowest-scoring int(total * ratio) channels over all prunable layers


class Schedule(enum.StrEnum):
    COSINE = "cosine"
    CONSTANT = "constant"


@dataclass(frozen=True)
class PruneConfig:
    criterion: PruneCriterion = PruneCriterion.VULNERABILITY
    ratio: float = field(default=0.3, metadata=rng(0, 1, max_exclusive=True))
    scope: PruneScope = PruneScope.LAYER
    channels: dict[str, tuple[int, ...]] = field(default_factory=dict)  # explicit removals (override ratio)
    epochs: int = field(default=10, metadata=rng(0, 10000))  # fine-tuning (the authors: 10)
    optimizer: Optimizer = Optimizer.SGD  # sgd (momentum 0.9, as the authors) or adam
    schedule: Schedule = Schedule.COSINE  # learning-rate schedule over the fine-tuning steps
    learning_rate: float = field(default=0.01, metadata=rng(0, 10, min_exclusive=True))
    batch_size: int = field(default=32, metadata=rng(1, 65536))


class HardenMode(enum.StrEnum):
    SELECTIVE = "selective"  # duplicate the selected channels (DMR), policy min or range
    SELECTIVE_TMR = "selective_tmr"  # two copies of the selected channels, policy vote
    FULL_DMR = "full_dmr"  # duplicate every channel (baseline)
    FULL_TMR = "full_tmr"  # triplicate every channel (baseline)


class Policy(enum.StrEnum):
    MIN = "min"  # element-wise minimum of the copies (the paper's)
    RANGE = "range"  # the copy inside the profiled [lo, hi]
    VOTE = "vote"  # median of three (TMR)


class Selection(enum.StrEnum):
    RATIO = "ratio"  # top max(1, int(C * ratio)) channels of each layer by vulnerability
    BUDGET = "budget"  # greedy by vulnerability per cost until the extra MACs/params reach budget %
    LIST = "list"  # exactly the channels given in `channels`
    # the protection planner (flow/plan.py): per layer a policy of plan_policies and its most vulnerable channels,
    # the most predicted critical-failure reduction within `budget` (or target_reduction_pct at the least cost),
    # from fault campaigns on the baseline and on every channel protected by each policy (harden/plan.json)
    PLAN = "plan"


class CostMetric(enum.StrEnum):
    MACS = "macs"
    PARAMS = "params"
    LUT_DSP = "lut_dsp"  # LUT + DSP of the analytic estimate (selection plan only)


@dataclass(frozen=True)
class HardenConfig:
    mode: HardenMode = HardenMode.SELECTIVE
    policy: Policy | None = None  # min | range (DMR modes), vote (TMR modes); null = min for DMR, vote for TMR
    selection: Selection = Selection.RATIO
    ratio: float = field(default=0.3, metadata=rng(0, 1, min_exclusive=True))  # fraction of channels per layer
    budget: float = field(default=20.0, metadata=rng(0, None, min_exclusive=True))  # % of the baseline's cost
    budget_metric: CostMetric = CostMetric.MACS
    channels: dict[str, tuple[int, ...]] = field(default_factory=dict)  # selection list: layer -> channels
    layers: tuple[str, ...] | None = None  # layers to harden; null = every QConv2D and QDense
    clip: bool = False  # Ranger-style clamp of every corrected channel to its profiled [lo, hi]
    profile_samples: int = field(default=2000, metadata=rng(1))  # training images profiled for [lo, hi]
    plan_policies: tuple[Policy, ...] = (Policy.MIN, Policy.RANGE, Policy.VOTE)  # selection plan: the options
    plan_faults: int = field(default=1000, metadata=rng(1))  # selection plan: faults per measurement campaign
    # selection plan: reach this reduction (%) of the predicted critical failure rate at the least cost instead
    # of spending `budget`; null = spend the budget
    target_reduction_pct: float | None = field(default=None, metadata=rng(0, 100, min_exclusive=True))

    @property
    def tmr(self) -> bool:
        return self.mode in (HardenMode.SELECTIVE_TMR, HardenMode.FULL_TMR)

    @property
    def resolved_policy(self) -> Policy:
        """The policy, defaulting to min (DMR modes) or vote (TMR modes)."""
        return self.policy or (Policy.VOTE if self.tmr else Policy.MIN)

    def __post_init__(self) -> None:
        if self.selection is Selection.PLAN:
            self._check_plan()
            return
        if self.budget_metric is CostMetric.LUT_DSP and self.selection is Selection.BUDGET:
            raise FlowError("budget_metric: got 'lut_dsp' with selection 'budget'; allowed with budget: macs, params "
                            "(lut_dsp needs the estimates of selection 'plan')")  # fmt: skip
        allowed = (Policy.VOTE,) if self.tmr else (Policy.MIN, Policy.RANGE)
        if self.resolved_policy not in allowed:
            hint = "" if self.tmr else " (vote needs a TMR mode: selective_tmr or full_tmr)"
            raise FlowError(
                f"policy: got '{self.resolved_policy.value}' with mode '{self.mode.value}'; allowed with this mode: "
                f"{', '.join(p.value for p in allowed)}{hint}"
            )

    def _check_plan(self) -> None:
        if self.mode is not HardenMode.SELECTIVE:
            raise FlowError(f"mode: got '{self.mode.value}' with selection 'plan'; allowed: selective (the planner "
                            "picks the copies of each layer from harden.plan_policies)")  # fmt: skip
        if self.policy is not None:
            raise FlowError(f"policy: got '{self.policy.value}' with selection 'plan'; allowed: null (the planner "
                            "picks each layer's policy from harden.plan_policies)")  # fmt: skip
        if not self.plan_policies or len(set(self.plan_policies)) != len(self.plan_policies):
            raise FlowError(f"plan_policies: got {[p.value for p in self.plan_policies]}; allowed: distinct "
                            "policies of min, range, vote (at least one)")  # fmt: skip


class FaultModel(enum.StrEnum):
    FLIP = "flip"  # one bit flipped for the whole evaluation of that fault (inject.mbu adjacent bits)
    STUCK0 = "stuck0"
    STUCK1 = "stuck1"
    BER = "ber"  # k flips at once, k ~ Binomial(targeted bits, ber)


class FaultSampling(enum.StrEnum):
    STATISTICAL = "statistical"  # Leveugle et al. sample size for margin/confidence/p
    EXHAUSTIVE = "exhaustive"  # every targeted bit (every start bit of an inject.mbu upset)
    COUNT = "count"  # `count` faults (also the number of trials for ber)


class Target(enum.StrEnum):
    WEIGHT = "weight"
    BIAS = "bias"
    CORRECTION = "correction"  # the correction layers' source maps and bounds
    COPY = "copy"  # every array of the copy layers of hardened layers (weight and bias select them too)


class Space(enum.StrEnum):
    WEIGHTS = "weights"  # stored words: the arrays inject.targets selects
    # the datapath: one element of one layer's output tensor (flip: one sample, one inference; stuck0/1: every one)
    ACTIVATIONS = "activations"


class ActivationPoint(enum.StrEnum):
    AFTER = "after"  # a weight layer's activation output (the output itself when no activation reads it)
    BEFORE = "before"  # a weight layer's own output, before the activation that reads it


class Engine(enum.StrEnum):
    LOCAL = "local"  # this machine: inject.workers processes (multiprocessing)
    DASK = "dask"  # Dask distributed workers: a LocalCluster of inject.workers processes, or inject.scheduler's


# a Dask scheduler's address, or the scheduler file `dask scheduler --scheduler-file` writes
SCHEDULER = r"(?:tcp|tls|ucx|ws|wss)://(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\]):[0-9]{1,5}|[^\x00\n]*\.json"
SCHEDULER_DOC = "an address tcp://host:port (or tls://, ucx://, ws://, wss://) or a scheduler file path ending in .json"


class Evaluation(enum.StrEnum):
    FAST = "fast"  # from the first faulty layer on, on fault-free tensors cached from the C-sim; stops once masked
    FULL = "full"  # the whole C-sim batch per fault


@dataclass(frozen=True)
class InjectConfig:
    model: FaultModel = FaultModel.FLIP
    # what a fault hits: weights (stored words) or activations (an element of a layer's output tensor in the fast
    # evaluation: flip = a transient upset of one sample's inference, site (sample, tensor, element, bit);
    # stuck0/stuck1 = a permanent fault in every inference, site (tensor, element, bit); ber refused). With
    # activations, targets weight/bias select the model's own layers' outputs, copy the copy layers', correction
    # the correction layers'; evaluation must be fast (docs/injection.md, datapath faults)
    space: Space = Space.WEIGHTS
    # space activations: which output of a weight layer that an activation reads is targeted (before: also its
    # copies' and correction's outputs; the outputs of every other layer are targeted under both)
    activation: ActivationPoint = ActivationPoint.AFTER
    ber: float = field(default=1e-3, metadata=rng(0, 1, min_exclusive=True))  # bit error rate for model: ber
    # multi-bit upset: each fault sets k adjacent bits b..b+k-1 of one word (flip, or stuck at 0/1), start bit b
    # in 0..width-k so it stays inside the word (sites per word: width-k+1); 1 = single-bit faults. At most the
    # narrowest targeted word's width; model ber flips independent bits and takes only 1
    mbu: int = field(default=1, metadata=rng(1, 64))
    targets: tuple[Target, ...] = (Target.WEIGHT, Target.BIAS)
    layers: tuple[str, ...] | None = None  # layers whose arrays are targeted; null = all
    sampling: FaultSampling = FaultSampling.STATISTICAL
    count: int = field(default=500, metadata=rng(1))  # faults for sampling: count, trials for ber
    margin: float = field(default=0.01, metadata=rng(0, 1, min_exclusive=True, max_exclusive=True))
    confidence: float = field(default=0.95, metadata=rng(0, 1, min_exclusive=True, max_exclusive=True))
    p: float = field(default=0.5, metadata=rng(0, 1, min_exclusive=True, max_exclusive=True))
    samples: int = field(default=100, metadata=rng(1))  # test images evaluated under every fault
    workers: int = field(default=0, metadata=rng(0, 256))  # processes; 0 = all cores
    chunk: int = field(default=25, metadata=rng(1))  # faults per worker task and per database transaction
    crosscheck: int = field(default=0, metadata=rng(0))  # faults re-evaluated with the Keras-side emulation
    # how each fault's C-sim run is done; the rows are the same. A project converted without fast evaluation
    # falls back to full (inject/summary.json "evaluation": the mode that ran, the share of faults stopped early)
    evaluation: Evaluation = Evaluation.FAST
    # stop once the Wilson 95 % interval of the critical rate has a half-width <= this, checked after every
    # inject.chunk faults taken in a seeded random order of the fault list; null = evaluate every fault
    stop_at_margin: float | None = field(default=None, metadata=rng(0, 0.5, min_exclusive=True, max_exclusive=True))
    engine: Engine = Engine.LOCAL  # where the faults are evaluated; the rows are the same
    # engine dask: the scheduler to use (a SLURMCluster's, or `dask scheduler`'s); null = a LocalCluster on this
    # machine with inject.workers processes
    scheduler: str | None = field(default=None, metadata={"pattern": SCHEDULER, "pattern_doc": SCHEDULER_DOC})

    def __post_init__(self) -> None:
        if self.mbu > 1 and self.model is FaultModel.BER:
            raise FlowError(f"mbu: got {self.mbu} with model 'ber'; allowed with ber: 1 (ber flips independent "
                            "bits; adjacent-bit upsets take model flip, stuck0 or stuck1)")  # fmt: skip
        if self.space is Space.ACTIVATIONS and self.model is FaultModel.BER:
            raise FlowError("model: got 'ber' with space 'activations'; allowed with activations: flip (transient), "
                            "stuck0, stuck1 (permanent)")  # fmt: skip
        if self.space is Space.ACTIVATIONS and self.evaluation is Evaluation.FULL:
            raise FlowError("evaluation: got 'full' with space 'activations'; allowed with activations: fast (the "
                            "activation fault hook lives in the fast evaluation)")  # fmt: skip
        if self.scheduler is not None and self.engine is not Engine.DASK:
            raise FlowError(f"scheduler: got {self.scheduler!r} with engine '{self.engine.value}'; allowed only with "
                            "engine: dask (or remove inject.scheduler)")  # fmt: skip


class Variant(enum.StrEnum):
    BASELINE = "baseline"
    SELECTIVE_MIN = "selective_min"
    SELECTIVE_RANGE = "selective_range"
    SELECTIVE_TMR = "selective_tmr"
    FULL_DMR = "full_dmr"
    FULL_TMR = "full_tmr"
    PRUNED = "pruned"  # prune.* (criterion, ratio), fine-tuned
    PRUNED_L1 = "pruned_l1"  # the same with criterion l1 (the conventional baseline)
    PRUNED_HARDENED = "pruned_hardened"  # pruned, ranked again, then hardened selectively (harden.*, min)
    # harden.selection plan (policy and channels per layer) at each compare.budgets, else harden.budget or
    # harden.target_reduction_pct; its measurement runs are made once and shared by every budget
    PLANNED = "planned"


@dataclass(frozen=True)
class FaultModelConfig:
    """One fault model of compare.fault_models: the inject keys that define what a fault is, each null = the run's
    inject.* (sampling, count, samples, seed and the engine are always inject.*'s)."""

    name: str = field(metadata=identifier())  # its column in the tables and its directory <case>/faultmodels/<name>
    model: FaultModel | None = field(default=None, metadata=ABSENT)  # null = inject.model
    space: Space | None = field(default=None, metadata=ABSENT)  # null = inject.space
    activation: ActivationPoint | None = field(default=None, metadata=ABSENT)  # null = inject.activation
    ber: float | None = field(default=None, metadata={**ABSENT, **rng(0, 1, min_exclusive=True)})  # null = inject.ber
    mbu: int | None = field(default=None, metadata={**ABSENT, **rng(1, 64)})  # null = inject.mbu
    targets: tuple[Target, ...] | None = field(default=None, metadata=ABSENT)  # null = inject.targets

    def inject_config(self, inject: InjectConfig) -> InjectConfig:
        """inject.* with this fault model's keys; InjectConfig's own checks apply (ber with activations, ...)."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}
        return dataclasses.replace(inject, **{k: v for k, v in given.items() if v is not None})


class Basis(enum.StrEnum):
    PER_FAULT = "per_fault"  # critical rate per injected fault: every variant gets the same number of faults
    PER_BIT = "per_bit"  # critical failure rate at one per-bit upset rate: fault sites x critical rate per fault


@dataclass(frozen=True)
class CompareConfig:
    # each gets the same fault model (inject.*); selection: harden.*. Default: all but planned (its measurement
    # runs cost four campaigns more)
    variants: tuple[Variant, ...] = tuple(v for v in Variant if v is not Variant.PLANNED)
    ratios: tuple[float, ...] = ()  # hardening ratios of the selective variants
    budgets: tuple[float, ...] = ()  # hardening budgets (% of harden.budget_metric); with ratios: both swept
    prune_ratios: tuple[float, ...] = ()  # pruning ratios of the pruned variants; empty = prune.ratio
    # what the Pareto front, the critical-vs-cost plot and the goal check rank by (the table shows both):
    # per_bit = failure rate at equal per-bit upset rate, sites_v x p_v / (sites_b x p_b), where sites are the bits
    # of every array inject.targets selects (copies and correction data included): a pruned model receives fewer
    # upsets, copies add sites that can fail; per_fault = critical rate per injected fault (p_v vs p_b)
    basis: Basis = Basis.PER_BIT
    # per-bit upset rate in FIT (failures per 1e9 device hours) per Mbit (1e6 bits), for the fit column:
    # PLACEHOLDER, set it for your device and environment. 100 is of the order of the real-time soft-error rates
    # of configuration memory of 28 nm (7 series) FPGAs at New York City sea level in AMD/Xilinx UG116 "Device
    # Reliability Report" (16 nm UltraScale+ is lower, block RAM higher); take your family's figure from UG116
    fit_per_mbit: float = field(default=100.0, metadata=rng(0, None, min_exclusive=True))
    # more fault models, each a campaign on every case's converted project beside inject.*'s (the main table):
    # compare/faultmodels.csv, a row per case and fault model; empty = inject.* alone
    fault_models: tuple[FaultModelConfig, ...] = ()

    def __post_init__(self) -> None:
        names = [fm.name for fm in self.fault_models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise FlowError(f"fault_models: name {twice[0]!r} given twice; allowed: distinct names")
        for key, values, top in (("ratios", self.ratios, 1.0), ("prune_ratios", self.prune_ratios, None)):
            bad = [v for v in values if not (0 < v <= 1 if top else 0 < v < 1)]
            if bad:
                allowed = "in (0, 1]" if top else "in (0, 1)"
                raise FlowError(f"{key}: got {bad[0]}; every ratio must be {allowed}")
        bad = [v for v in self.budgets if not v > 0]
        if bad:
            raise FlowError(f"budgets: got {bad[0]}; every budget must be > 0 (% of the baseline's cost)")


class EstimateMethod(enum.StrEnum):
    ANALYTIC = "analytic"  # formulas over the hls4ml graph (flow/hardware/estimate.py), seconds, no tools
    VENDOR = "vendor"  # hls4ml's build (C synthesis) with vivado_hls / vitis_hls on PATH, its reports
    YOSYS = "yosys"  # da4ml RTL of every layer synthesized by yosys synth_xilinx (needs yosys on PATH)


class Simulator(enum.StrEnum):
    AUTO = "auto"  # verilator when on PATH, else iverilog
    VERILATOR = "verilator"  # compiled: a conv model in ~20 s
    IVERILOG = "iverilog"  # event-driven: zero-delay glitches make conv models take minutes per sample


@dataclass(frozen=True)
class EstimateConfig:
    method: EstimateMethod = EstimateMethod.ANALYTIC
    # a yosys calibration file (.json) written by bench/calibrate_yosys.py --out; null = the shipped, read-only
    # flow/hardware/yosys_calibration.json (a run never reads a user calibration unless it is named here)
    calibration: str | None = None

    def __post_init__(self) -> None:
        if self.calibration is not None and not self.calibration.endswith(".json"):
            raise FlowError(f"calibration: got {self.calibration!r}; allowed: a .json file written by "
                            "bench/calibrate_yosys.py --out, or null for the shipped calibration")  # fmt: skip


@dataclass(frozen=True)
class RtlConfig:
    samples: int = field(default=100, metadata=rng(1))  # test images simulated and compared with the C-sim
    simulator: Simulator = Simulator.AUTO  # verilator when on PATH (fast), else iverilog


@dataclass(frozen=True)
class ReportConfig:
    title: str | None = None  # heading of report/index.html; null = the run directory's name


@dataclass(frozen=True)
class RunConfig:
    seed: int = field(default=0, metadata=rng(0, 2**31 - 1))  # fixes data splits, training and fault lists
    out: str = "runs/default"  # output directory (relative to the current directory); --out overrides
    steps: tuple[str, ...] | None = None  # steps to run; null = the default list; --steps overrides
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hls: HlsConfig = field(default_factory=HlsConfig)
    board: BoardConfig = field(default_factory=BoardConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    harden: HardenConfig = field(default_factory=HardenConfig)
    inject: InjectConfig = field(default_factory=InjectConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    rtl: RtlConfig = field(default_factory=RtlConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        if self.model.path is None and self.model.name is None and self.model.json is None:
            raise FlowError("model: give either 'name' (a zoo model) or 'path' (a saved QKeras model)")
        if (self.model.json is None) != (self.model.weights is None):
            raise FlowError("model: 'json' and 'weights' go together (hls4ml's architecture + weights pair)")
        if self.model.json is not None and self.model.path is not None:
            raise FlowError("model: give 'path' or 'json' + 'weights', not both")
        if self.board.name is not None and self.board.part is not None:
            raise FlowError("board: give 'name' (a file in boards/) or 'part' (a raw FPGA part), not both")
        if self.data.name == DataName.NPZ and not self.data.path:
            raise FlowError(
                "data.path: required when data.name is 'npz' (a file with x_train, y_train, x_test, y_test)"
            )
        for i, fm in enumerate(self.compare.fault_models):
            try:
                fm.inject_config(self.inject)
            except FlowError as exc:
                raise FlowError(f"compare.fault_models[{i}] ({fm.name}): {exc}") from None

    def fault_model_injects(self) -> dict[str, InjectConfig]:
        """compare.fault_models by name, each as the InjectConfig of its campaigns."""
        return {fm.name: fm.inject_config(self.inject) for fm in self.compare.fault_models}


def config_from_dict(data: dict, source: str = "config") -> RunConfig:
    """Validate plain data (as from YAML) into a RunConfig; errors name ``source`` and the key."""
    return build(RunConfig, data, source)


MAX_CONFIG_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing aliases (``*name``): no exponential 'billion laughs' expansion."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases (*{event.anchor}) are not allowed in a run configuration, line "
                                 f"{event.start_mark.line + 1}")  # fmt: skip
        return super().compose_node(parent, index)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration (a yaml.SafeLoader that refuses aliases, at most 1 MiB)."""
    path = Path(path)
    if not path.is_file():
        raise FlowError(f"config file not found: {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise FlowError(f"{path}: {path.stat().st_size} bytes; a run configuration is at most {MAX_CONFIG_BYTES}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise FlowError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise FlowError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        "a run configuration must be UTF-8") from None  # fmt: skip
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # a safe loader (SafeLoader) without aliases
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an integer literal of more than 4300 digits
        raise FlowError(f"{path}: not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    return config_from_dict(data, str(path))


def config_to_dict(cfg: RunConfig) -> dict:
    """The fully resolved configuration as plain data (written next to every run's outputs)."""
    return to_plain(cfg)
