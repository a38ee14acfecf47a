//! DenseNet-121 (Huang et al. 2017; CheXNet's network) in tch, with torchvision's parameter
//! names (`features.conv0.weight`, `features.denseblock1.denselayer1.norm1.running_mean`, ...,
//! `classifier.weight`) so weights move both ways between covidx and
//! `torchvision.models.densenet121`.
//!
//! Differences from `tch::vision::densenet`, on purpose: average pooling divides by the window
//! (tch's passes `divisor_override = 1`, which sums), and the last pooling is adaptive, so any
//! input size from 32 px works (224 and 480 alike). The 1-channel input is scaled and
//! normalised on the device and repeated to 3 channels, as torchvision's models expect.
//!
//! **Layers**, for `--trainable`: the 242 layers with parameters in forward order: `conv0`,
//! `norm0`, per dense layer `norm1 conv1 norm2 conv2` (58 dense layers), per transition `norm
//! conv` (3), `norm5`, `classifier`. A fraction `f` makes the last `ceil(f * 242)` trainable
//! (the classifier always). Keras's DenseNet121, which the paper fine-tuned, counts 427 layers,
//! activations and concatenations included: 7 per dense layer where we count 4, spread the same
//! way, so a fraction selects nearly the same blocks in both (0.18 -> the last 44 of ours, the
//! last 11 dense layers of block 4; Keras's 18 % -> 77 of 427, also 11 dense layers).

use anyhow::{bail, Result};
use tch::{nn, Device, Kind, Tensor};

/// Dense layers per block.
pub const BLOCKS: [usize; 4] = [6, 12, 24, 16];
/// Growth rate (channels each dense layer adds).
pub const GROWTH: i64 = 32;
/// Bottleneck width factor (`bn_size`).
pub const BN_SIZE: i64 = 4;
/// Channels after the stem.
pub const INIT_FEATURES: i64 = 64;
/// Layers with parameters (see the module documentation).
pub const LAYERS: usize = 2 + 58 * 4 + 3 * 2 + 2;

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// Which layers train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trainable {
    /// The classifier only (the paper's "1 layer").
    Head,
    /// Every layer.
    All,
    /// This fraction of [`LAYERS`], counted from the output.
    Fraction(f64),
}

impl Trainable {
    /// Parses `head`, `all` or a fraction in (0, 1].
    pub fn parse(s: &str) -> Result<Trainable> {
        match s {
            "head" => Ok(Trainable::Head),
            "all" => Ok(Trainable::All),
            _ => match s.parse::<f64>() {
                Ok(f) if f > 0.0 && f <= 1.0 => Ok(Trainable::Fraction(f)),
                _ => bail!("--trainable {s:?}: head, all, or a fraction in (0, 1] such as 0.18"),
            },
        }
    }

    /// Number of trainable layers, counted from the output.
    pub fn layers(self) -> usize {
        match self {
            Trainable::Head => 1,
            Trainable::All => LAYERS,
            Trainable::Fraction(f) => ((f * LAYERS as f64).ceil() as usize).clamp(1, LAYERS),
        }
    }

    /// The name written in checkpoints (`head`, `all` or the fraction).
    pub fn name(self) -> String {
        match self {
            Trainable::Head => "head".into(),
            Trainable::All => "all".into(),
            Trainable::Fraction(f) => format!("{f}"),
        }
    }
}

/// How the u8 input is scaled before the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// x/255, then ImageNet's mean and std per channel (torchvision's and CheXNet's convention).
    ImageNet,
    /// x/255 (COVID-Net's).
    Unit,
}

impl Normalize {
    /// Parses `imagenet` or `unit`.
    pub fn parse(s: &str) -> Result<Normalize> {
        match s {
            "imagenet" => Ok(Normalize::ImageNet),
            "unit" => Ok(Normalize::Unit),
            _ => bail!("--normalize {s:?}: imagenet or unit"),
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Normalize::ImageNet => "imagenet",
            Normalize::Unit => "unit",
        }
    }

    /// ImageNet's per-channel mean and std (RGB).
    pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
    /// See [`Normalize::IMAGENET_MEAN`].
    pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
}

/// A convolution without bias.
#[derive(Debug)]
struct Conv {
    w: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d::<Tensor>(&self.w, None, [self.stride], [self.padding], [1], 1)
    }
}

/// A batch norm; in eval mode when frozen, whatever the model's mode.
#[derive(Debug)]
struct Norm {
    name: String,
    w: Tensor,
    b: Tensor,
    mean: Tensor,
    var: Tensor,
    trainable: bool,
}

impl Norm {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        x.batch_norm(
            Some(&self.w),
            Some(&self.b),
            Some(&self.mean),
            Some(&self.var),
            train && self.trainable,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }
}

#[derive(Debug)]
struct DenseLayer {
    norm1: Norm,
    conv1: Conv,
    norm2: Norm,
    conv2: Conv,
}

#[derive(Debug)]
struct Transition {
    norm: Norm,
    conv: Conv,
}

/// Builds the variables in forward order, deciding for each layer whether it trains.
struct Builder<'a> {
    root: nn::Path<'a>,
    /// Index of the first trainable layer.
    first_trainable: usize,
    next: usize,
}

/// Adds variable `name` (dotted, torchvision's) under `root`.
fn add(root: &nn::Path, name: &str, t: Tensor, trainable: bool) -> Tensor {
    let (dir, leaf) = name.rsplit_once('.').unwrap_or(("", name));
    let path = dir
        .split('.')
        .filter(|p| !p.is_empty())
        .fold(root.clone(), |p, part| p.sub(part));
    path.add(leaf, t, trainable)
}

impl Builder<'_> {
    fn layer(&mut self) -> bool {
        let trainable = self.next >= self.first_trainable;
        self.next += 1;
        trainable
    }

    fn conv(
        &mut self,
        name: &str,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: i64,
        padding: i64,
    ) -> Conv {
        let trainable = self.layer();
        // torchvision: kaiming_normal_ (fan in, ReLU gain).
        let std = (2.0 / (c_in * k * k) as f64).sqrt();
        let w = Tensor::randn([c_out, c_in, k, k], (Kind::Float, self.root.device())) * std;
        Conv {
            w: add(&self.root, &format!("{name}.weight"), w, trainable),
            stride,
            padding,
        }
    }

    fn norm(&mut self, name: &str, c: i64) -> Norm {
        let trainable = self.layer();
        let dev = (Kind::Float, self.root.device());
        Norm {
            name: name.to_string(),
            w: add(
                &self.root,
                &format!("{name}.weight"),
                Tensor::ones([c], dev),
                trainable,
            ),
            b: add(
                &self.root,
                &format!("{name}.bias"),
                Tensor::zeros([c], dev),
                trainable,
            ),
            mean: add(
                &self.root,
                &format!("{name}.running_mean"),
                Tensor::zeros([c], dev),
                false,
            ),
            var: add(
                &self.root,
                &format!("{name}.running_var"),
                Tensor::ones([c], dev),
                false,
            ),
            trainable,
        }
    }
}

/// DenseNet-121 with a `classes`-way head.
#[derive(Debug)]
pub struct DenseNet121 {
    conv0: Conv,
    norm0: Norm,
    blocks: Vec<Vec<DenseLayer>>,
    transitions: Vec<Transition>,
    norm5: Norm,
    classifier_w: Tensor,
    classifier_b: Tensor,
    classes: i64,
    normalize: Normalize,
    trainable: Trainable,
    /// Per-channel mean and std `[1, 1, 1, 3]` on the model's device (0 and 1 for `unit`):
    /// the input's normalisation and 1 -> 3 channels as broadcasts.
    input_mean: Tensor,
    input_std: Tensor,
    channels_last: bool,
}

/// `t` (4-d) with channels-last strides (NHWC in memory, NCHW to every op).
pub fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

impl DenseNet121 {
    /// Creates the variables under `vs`'s root (torchvision's names), randomly initialised as
    /// torchvision does (call `tch::manual_seed` first for a reproducible start); only the
    /// layers `trainable` selects are trainable variables.
    pub fn new(
        vs: &nn::VarStore,
        classes: usize,
        trainable: Trainable,
        normalize: Normalize,
    ) -> DenseNet121 {
        let mut b = Builder {
            root: vs.root(),
            first_trainable: LAYERS - trainable.layers(),
            next: 0,
        };
        let conv0 = b.conv("features.conv0", 3, INIT_FEATURES, 7, 2, 3);
        let norm0 = b.norm("features.norm0", INIT_FEATURES);
        let mut c = INIT_FEATURES;
        let (mut blocks, mut transitions) = (Vec::new(), Vec::new());
        for (bi, &n) in BLOCKS.iter().enumerate() {
            let mut layers = Vec::new();
            for li in 0..n {
                let p = format!("features.denseblock{}.denselayer{}", bi + 1, li + 1);
                let c_in = c + li as i64 * GROWTH;
                layers.push(DenseLayer {
                    norm1: b.norm(&format!("{p}.norm1"), c_in),
                    conv1: b.conv(&format!("{p}.conv1"), c_in, BN_SIZE * GROWTH, 1, 1, 0),
                    norm2: b.norm(&format!("{p}.norm2"), BN_SIZE * GROWTH),
                    conv2: b.conv(&format!("{p}.conv2"), BN_SIZE * GROWTH, GROWTH, 3, 1, 1),
                });
            }
            blocks.push(layers);
            c += n as i64 * GROWTH;
            if bi + 1 < BLOCKS.len() {
                let p = format!("features.transition{}", bi + 1);
                transitions.push(Transition {
                    norm: b.norm(&format!("{p}.norm"), c),
                    conv: b.conv(&format!("{p}.conv"), c, c / 2, 1, 1, 0),
                });
                c /= 2;
            }
        }
        let norm5 = b.norm("features.norm5", c);
        let head = b.layer();
        debug_assert_eq!(b.next, LAYERS);
        // torchvision: nn.Linear's default weight init (uniform +-1/sqrt(fan_in)), bias 0.
        let bound = 1.0 / (c as f64).sqrt();
        let dev = (Kind::Float, vs.device());
        let w = Tensor::rand([classes as i64, c], dev) * (2.0 * bound) - bound;
        let root = vs.root();
        let (mean, std) = match normalize {
            Normalize::ImageNet => (Normalize::IMAGENET_MEAN, Normalize::IMAGENET_STD),
            Normalize::Unit => ([0.0; 3], [1.0; 3]),
        };
        let per_channel = |f: &dyn Fn(usize) -> f64| {
            Tensor::from_slice(&[f(0) as f32, f(1) as f32, f(2) as f32])
                .view([1, 1, 1, 3])
                .to_device(vs.device())
        };
        DenseNet121 {
            input_mean: per_channel(&|c| mean[c]),
            input_std: per_channel(&|c| std[c]),
            channels_last: false,
            conv0,
            norm0,
            blocks,
            transitions,
            norm5,
            classifier_w: add(&root, "classifier.weight", w, head),
            classifier_b: add(
                &root,
                "classifier.bias",
                Tensor::zeros([classes as i64], dev),
                head,
            ),
            classes: classes as i64,
            normalize,
            trainable,
        }
    }

    /// Number of classes of the head.
    pub fn classes(&self) -> usize {
        self.classes as usize
    }

    /// The trainable part it was built with.
    pub fn trainable(&self) -> Trainable {
        self.trainable
    }

    /// The input normalisation.
    pub fn normalize(&self) -> Normalize {
        self.normalize
    }

    /// Names of the batch norms that run in training mode when the model trains (the
    /// trainable ones), for `num_batches_tracked`.
    pub fn training_norms(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |n: &Norm| {
            if n.trainable {
                out.push(n.name.clone())
            }
        };
        add(&self.norm0);
        for block in &self.blocks {
            for l in block {
                add(&l.norm1);
                add(&l.norm2);
            }
        }
        for t in &self.transitions {
            add(&t.norm);
        }
        add(&self.norm5);
        out
    }

    /// The network input from u8 images `[n, 1, S, S]` (any device): on the model's device,
    /// float, `(x / 255 - mean) / std` per channel (torchvision's arithmetic, element for
    /// element), 3 channels (channels-last strides when the model is channels-last), as
    /// broadcasts with no host synchronisation.
    pub fn prepare(&self, images: &Tensor) -> Tensor {
        let x = images
            .to_device(self.device())
            .permute([0, 2, 3, 1])
            .to_kind(Kind::Float);
        // [n, S, S, 1] against [1, 1, 1, 3]: NHWC in memory.
        let x = ((x / 255.0 - &self.input_mean) / &self.input_std).permute([0, 3, 1, 2]);
        if self.channels_last {
            x
        } else {
            x.contiguous()
        }
    }

    /// Converts the convolution weights to channels-last (cuDNN's fast NHWC kernels; the
    /// input follows in [`DenseNet121::prepare`]). Do this before creating the optimizer, so
    /// that its moments take the same layout. Weights saved afterwards are still NCHW.
    pub fn set_channels_last(&mut self) {
        let mut convs: Vec<&mut Conv> = vec![&mut self.conv0];
        for block in &mut self.blocks {
            for l in block {
                convs.push(&mut l.conv1);
                convs.push(&mut l.conv2);
            }
        }
        for t in &mut self.transitions {
            convs.push(&mut t.conv);
        }
        tch::no_grad(|| {
            for c in convs {
                let nhwc = to_channels_last(&c.w);
                c.w.set_data(&nhwc);
            }
        });
        self.channels_last = true;
    }

    /// The device the variables are on.
    pub fn device(&self) -> Device {
        self.input_mean.device()
    }

    /// True when the model runs channels-last.
    pub fn is_channels_last(&self) -> bool {
        self.channels_last
    }

    /// Logits `[n, classes]` of a prepared float batch `[n, 3, H, W]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = self
            .norm0
            .forward(&self.conv0.forward(x), train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for (bi, block) in self.blocks.iter().enumerate() {
            let mut features = vec![x];
            for l in block {
                let input = Tensor::cat(&features, 1);
                let y = l.norm1.forward(&input, train).relu();
                let y = l.conv1.forward(&y);
                let y = l.norm2.forward(&y, train).relu();
                features.push(l.conv2.forward(&y));
            }
            x = Tensor::cat(&features, 1);
            if let Some(t) = self.transitions.get(bi) {
                let y = t.norm.forward(&x, train).relu();
                x = t
                    .conv
                    .forward(&y)
                    .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None);
            }
        }
        let x = self
            .norm5
            .forward(&x, train)
            .relu()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1);
        x.linear(&self.classifier_w, Some(&self.classifier_b))
    }
}
