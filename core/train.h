/* train.h - the training loop: the seed's PyTorch script, as a function.
 *
 * A Trainer holds already-built objects (model, optimizer, scheduler, data
 * loaders, a loss function) and train_run() drives them as a PyTorch loop
 * does:
 *
 *     for epoch in range(epochs):
 *         model.train()
 *         for x, y in train_loader:
 *             opt.zero_grad(); out = model(x); loss = loss_fn(out, y)
 *             log("loss", "lr"); loss.backward(); opt.step()
 *         model.eval(); with torch.no_grad(): validate on val_loader
 *         log epoch metrics; scheduler.step(); maybe checkpoint
 *
 * Metrics follow design.md "Metrics" exactly, so they compare number for
 * number with PyTorch's: "loss" at step k is the mean loss of the batch
 * that step k trains on, before its update, and "lr" the lr it uses; steps
 * count optimizer steps from 1 across epochs, epochs count from 0. With
 * accumulate_steps k, a step trains on k batches (loss / k backward each,
 * as a PyTorch loop accumulating gradients) and "loss" is their mean. At the
 * end of each epoch, under the step of its last step: "train_loss" (the
 * batch losses weighted by batch size, i.e. the mean over the epoch's
 * samples), "train_accuracy", "val_loss", "val_accuracy" (eval mode, no
 * grad, whole val set), "samples_per_s" (training samples over
 * train_time_s, as a PyTorch user times a training loop), "train_time_s"
 * (the epoch's training: its steps and the data loading for them, not the
 * validation) and "epoch_time_s" (wall time of the whole epoch, training
 * and validation). design.md had samples_per_s over the whole epoch, which
 * counted the validation's time against the training samples. Accuracies
 * only with `accuracy` (int64 labels, [B, C] outputs, argmax over dim 1),
 * "train_perplexity" and "val_perplexity"
 * (exp of the mean cross-entropy, a language model's measure) only with
 * `perplexity`, val metrics only with a val loader.
 *
 * The trainer knows nothing of HTTP or SQL: it reports through callbacks
 * (metric, log, checkpoint), and a cancel flag set by another thread stops
 * it at the next step. A NaN or infinite loss stops it with an error naming
 * the step.
 *
 * Checkpoints are directories: model.safetensors (the model's state_dict
 * under PyTorch names, loadable by torch's load_state_dict) and
 * trainer.safetensors (optimizer state as torch's flattened state_dict,
 * and in its metadata the scheduler's epoch, the dropout Rng, both
 * loaders' positions, the step, the epoch and the running sums of an
 * epoch in progress). train_resume() puts a freshly built Trainer back
 * there, and train_run() then continues the very trajectory, loss for
 * loss, that the interrupted run would have followed.
 */
#ifndef TRAIND_CORE_TRAIN_H
#define TRAIND_CORE_TRAIN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/data/dataloader.h"
#include "core/nn/module.h"
#include "core/ops.h"
#include "core/optim/optimizer.h"
#include "core/optim/lr_scheduler.h"
#include "core/rng.h"

/* A batch-mean loss: tensor_cross_entropy, tensor_mse_loss, ... (called
 * with REDUCTION_MEAN). */
typedef Tensor *(*TrainLossFn)(Tensor *output, Tensor *target, Reduction reduction);
/* A class loss with its options: tensor_cross_entropy_with, tensor_nll_loss_with. */
typedef Tensor *(*TrainClassLossFn)(Tensor *output, Tensor *target, Reduction reduction,
                                    const ClassLossOptions *options);

typedef struct Trainer Trainer;

/* A step a CUDA graph ran whose numbers are not read yet: what its
 * metrics need besides them. */
typedef struct {
    int64_t step, samples;
    int epoch;
    double lr;
} TrainQueuedStep;

/* Where a run stands. Zero (the state of a new Trainer) means the start;
 * train_run updates it as it goes, train_resume loads it. */
typedef struct {
    int64_t step;  /* optimizer steps done, across epochs */
    int epoch;     /* the epoch in progress, or the next one to start */
    int64_t batch; /* batches of `epoch` already trained */
    /* Sums over the batches of `epoch` done so far, for its metrics. */
    double loss_sum;   /* batch mean loss * batch size */
    int64_t samples;
    int64_t correct;
    int64_t labelled; /* targets that are not ignore_index: accuracy's denominator */
    double elapsed_s; /* training time of `epoch` so far (its steps, kept
                         through a resume; never its validation) */
    /* Set by train_resume: the train loader already stands in `epoch` at
     * `batch`, so train_run continues that epoch instead of starting it. */
    bool epoch_begun;
} TrainState;

typedef struct {
    void *user;
    /* One metric, as design.md's JSON line {"name", "step", "epoch", "value"}. */
    void (*metric)(void *user, const char *name, int64_t step, int epoch, double value);
    /* A human-readable line ("epoch 0: train_loss 0.4312 ..."), no newline. */
    void (*log)(void *user, const char *line);
    /* Called after epoch `epoch` when (epoch + 1) % checkpoint_every == 0 and
     * after the last epoch (the scheduler has stepped; t->state is the start
     * of epoch + 1). It typically calls train_save_checkpoint(t, dir).
     * Non-zero fails the run with the error it set. */
    int (*checkpoint)(void *user, const Trainer *t, int epoch, int64_t step);
} TrainCallbacks;

struct Trainer {
    /* Borrowed, built by the caller; train_run neither frees nor replaces
     * them. The model, the optimizer's parameters and the scheduler must
     * belong together (opt built over module_parameters(model), the
     * scheduler over opt's lr). */
    Module *model;
    Optimizer *opt;
    LrScheduler *lr_scheduler; /* may be NULL: constant lr */
    DataLoader *train;
    DataLoader *val; /* may be NULL: no validation */
    Rng *rng;        /* the stream Dropout draws from; may be NULL when the
                        model has no Dropout. train_run hands it to the model
                        (module_set_rng) and checkpoints save it. */
    TrainLossFn loss;               /* the loss: either this, */
    TrainClassLossFn class_loss;    /* or this, called with class_options (whose
                                       ignore_index accuracy skips as well) */
    ClassLossOptions class_options;
    int epochs;      /* total, counted from epoch 0 (a resumed run goes on to it) */
    bool accuracy;   /* train_accuracy / val_accuracy */
    bool perplexity; /* train_perplexity / val_perplexity: exp(train_loss), exp(val_loss) */
    Device device;   /* where batches go; the model must already be there */
    bool allow_tf32; /* TF32 tensor cores for float32 matrix products (GPU) */
    Precision precision; /* what convolutions compute in (checked at the start) */
    int accumulate_steps;  /* batches per optimizer step (0 or 1: one); the step's
                              gradient is the mean of theirs, the epoch's last
                              step takes what is left */
    double clip_grad_norm; /* > 0: gradients scaled to this total 2-norm at most
                              before each step (torch.nn.utils.clip_grad_norm_),
                              the norm before it logged as "grad_norm" */
    atomic_int *cancel; /* may be NULL; non-zero stops the run at the next step */
    /* A data-parallel job: this process is rank g->rank of g->world, each
     * training on its shard of every global batch (core/train_dist.h); the
     * losses, metrics and weights are those of one process training on
     * the whole batch. NULL: one process. Only rank 0 calls the callbacks
     * (it alone writes checkpoints); every rank stops at the same step. */
    DistGroup *dist;
    int64_t bucket_bytes; /* its gradient buckets' size (0: DIST_BUCKET_BYTES) */
    /* internal to a data-parallel run */
    DistRows rows; /* this rank's rows of the batch in flight */
    struct DistReducer *reducer;
    bool dist_collective_forward; /* the model's training forward joins collectives (BatchNorm) */
    int checkpoint_every; /* epochs between checkpoint callbacks; 0: none */
    /* Each step captured once as a CUDA graph and replayed (a job's
     * "cuda_graphs"), where the device and the step allow: see
     * core/train_graph.h. A step's "loss" is then read and logged after the
     * next step is queued. */
    bool cuda_graphs;
    TrainCallbacks cb;
    /* internal to a run with cuda_graphs */
    struct TrainGraph *graph;
    bool graph_warm; /* a step of full batches ran op by op: the libraries' plans exist */
    TrainQueuedStep graph_steps[2]; /* the graph's steps pending, oldest first
                                       (train_graph_pending says how many) */
    /* A graph step failed when read (a non-finite loss, a device error),
     * after the next step was queued and the parameters updated past it:
     * the state is no place to resume from, and no checkpoint of it may be
     * taken (a stop that comes with the failure records the failure). */
    bool graph_failed;
    /* train_run ended at a cancel (not at a failure that came while one was
     * pending): t->state is a consistent point, fit for a checkpoint */
    bool cancelled;
    /* train_run failed on a number every rank of a data-parallel run has
     * alike (the batch's loss summed over them, not finite): they all
     * failed at the same step, none waits for another */
    bool failed_together;

    TrainState state;
};

/* Zeroes *t and sets the defaults (CPU device, no checkpoints). The caller
 * then fills in the objects. */
void train_init(Trainer *t);

/* Trains from t->state up to t->epochs. 0, or -1 with an error:
 * "step 57: loss is nan", "cancelled at step 12" (steps done), or the
 * failing component's message prefixed with the step or epoch. After a
 * cancel or a failure t->state is where the run stopped (for a cancel a
 * consistent point that train_save_checkpoint can save). Grad mode is
 * restored on every path; the model is left in the mode the loop last set
 * (eval after a validation, as a PyTorch loop leaves it). */
int train_run(Trainer *t);

/* Training samples over training time of the epoch in progress, up to its
 * last finished step (validation excluded): at the epoch's end, its
 * "samples_per_s". 0 before the epoch's first step. Live progress reads it
 * from the metric callback, on the training thread. */
double train_samples_per_s(const TrainState *s);

/* The number of optimizer steps a whole run makes (for progress bars). */
int64_t train_total_steps(const Trainer *t);
/* Optimizer steps in one epoch: the train loader's batches over
 * accumulate_steps, rounded up. */
int64_t train_steps_per_epoch(const Trainer *t);
int64_t train_steps_for(int64_t batches, int accumulate_steps);
/* Batches per optimizer step: accumulate_steps, 1 without accumulation. */
int train_batches_per_step(const Trainer *t);

/* Writes dir/model.safetensors and dir/trainer.safetensors (see above).
 * Both files are written into "<dir>.tmp.<pid>.<n>", fsynced, and the
 * directory then takes dir's place in one atomic rename (an existing dir
 * is exchanged and removed), so dir is always a whole checkpoint or the
 * previous one. 0, or -1 with an error and nothing left behind. */
int train_save_checkpoint(const Trainer *t, const char *dir);

/* Restores a checkpoint into a Trainer built as the one that saved it
 * (same model, optimizer type, scheduler presence, loaders' batch
 * counts): model weights and buffers, optimizer state and hyperparameters,
 * scheduler epoch, dropout Rng, both loaders' positions and t->state.
 * Everything is read and checked before the Trainer changes; a failure
 * while applying (a shape mismatch in the model) may leave it partly
 * restored, so discard it then. 0, or -1 with an error naming the file. */
int train_resume(Trainer *t, const char *dir);

/* Loads a .safetensors file of PyTorch state_dict names into the model
 * (strict: every key present, no others, shapes equal): the job spec's
 * "init". 0, or -1 with an error naming the file (callers add "init: "). */
int train_load_init(Module *model, const char *safetensors_path);

#endif
