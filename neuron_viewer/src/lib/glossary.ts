/** One-sentence definitions for every column and control (the README's Glossary, word for word
 * where it has the term). Tooltips read them from here, so the UI and the docs say the same thing. */

export const GLOSSARY = {
  component: "A unit with weights — an MLP neuron, an attention head, an SAE latent, the token or position embedding.",
  node: "One invocation of a component on one prompt — a neuron or latent at one token; a head at one (query token, key token) pair.",
  write_vector: "What a node adds to the residual stream.",
  objective: "The scalar a request explains (TDB's \"direction of interest\") — by default the mean logit of the target tokens minus the mean logit of the distractor tokens at the last position; when tracing, one node's pre-activation or attention logit.",
  activation: "A neuron's post-GELU value, a latent's value, a head pair's attention probability.",
  write_magnitude: "The norm of a node's write vector.",
  direct_effect: "The write vector dotted with the gradient of the objective at the final residual stream (final LayerNorm scale held constant); the direct effects of all nodes plus the biases sum exactly to the objective.",
  total_effect: "Activation × ∂objective/∂activation — the first-order estimate of how much the objective would drop if the node were removed, through every path.",
  trace: "Attribute one node's pre-activation (or a head's attention logit through its query, key or both, or its write through its value) to the nodes before it.",
  ablate: "Replace a node's value with zero (zero), its mean over a reference corpus (mean), or its value on a random reference prompt (resample).",
  patch: "Take a node's value from another prompt's run.",
  exact_effect: "loss(clean) − loss(node zero-ablated), measured by really ablating the node: what the estimated total effect estimates.",
  graddrop: "GradDrop (AtP*): the mean over the other layers of |the estimated total effect with that layer's gradient dropped|; much larger than |total effect| where paths cancel and the estimate may hide a node that matters.",
} as const;

export type GlossaryTerm = keyof typeof GLOSSARY;

/** Tooltips of the debugger's controls: each names what the control does, then defines its term. */
export const TIPS = {
  kind: `Component type. ${GLOSSARY.component}`,
  nodeName: "The component: L<layer>.H<head>, L<layer>.N<neuron>, L<layer>.<SAE site>.F<latent>, or an embedding.",
  position: `Token position of the node (for a head pair: query ← key). ${GLOSSARY.node}`,
  activation: `act — activation. ${GLOSSARY.activation}`,
  write_magnitude: `write — write magnitude. ${GLOSSARY.write_magnitude} ${GLOSSARY.write_vector}`,
  direct_effect: `direct — direct effect. ${GLOSSARY.direct_effect}`,
  total_effect: `total — estimated total effect. ${GLOSSARY.total_effect}`,
  exact_effect: `exact — measured total effect. ${GLOSSARY.exact_effect} Only the rows the request ablated for real ` +
    "(\"exact top N\": the table's first N rows, most |total| first) have one; the others are empty.",
  graddrop: `graddrop — GradDrop score. ${GLOSSARY.graddrop}`,
  sideL: "L: the value on the first prompt.",
  sideR: "R: the value on the second prompt.",
  sideDiff: "Δ: the second prompt's value minus the first's.",
  ablateZero: `Zero-ablate. ${GLOSSARY.ablate}`,
  ablateMean: `Mean-ablate. ${GLOSSARY.ablate}`,
  ablateResample: `Resample-ablate. ${GLOSSARY.ablate}`,
  patch: `Patch from the second prompt. ${GLOSSARY.patch}`,
  headScope: "Whole head at the query token: every key's contribution at once (zero, mean, resample or patch the head's output z at that position).",
  pairScope: "One (query, key) pair: removes exactly that pair's contribution (the engine can only zero a pair).",
  trace: `Trace upstream. ${GLOSSARY.trace}`,
  traceQ: "Trace the head's attention logit for this pair through its query input.",
  traceK: "Trace the head's attention logit for this pair through its key input.",
  traceQK: "Trace the head's attention logit for this pair through query and key together.",
  traceV: "Trace the head's write through its value input (to the node being traced, or to the objective).",
  page: "Open the component's page: top-activating examples, histogram, promoted tokens, live activations.",
  prompt: "The text the model reads; it starts with <|endoftext|> as the model was trained.",
  prompt2: "A second prompt to compare with (left/right/Δ columns) and to patch from; the patching sweep's corrupted run.",
  targets: `Tokens whose logit the objective raises. ${GLOSSARY.objective}`,
  distractors: `Tokens whose logit the objective lowers. ${GLOSSARY.objective}`,
  topK: "How many nodes to fetch per column: the k largest and k smallest of act, direct and total, and the k largest write, on each prompt, merged (so the table can hold up to 7 × k × prompts rows).",
  mlpLatents: "Show the MLP's SAE latents (and the SAE's error node) instead of its neurons.",
  attnLatents: "Show the attention SAE's latents (and its error node) instead of heads.",
  abs: "Sort by |value|: the biggest effects either way first.",
  group: "Group rows by component type (heads, neurons, latents, SAE errors, embeddings), sorted within each group.",
  kindFilter: `Show only these component types. ${GLOSSARY.component}`,
  layerFilter: "Show only nodes of this layer.",
  search: "Filter by label, e.g. L1.H2 or L0.N42.",
  run: `Compute the node table for the prompt. ${GLOSSARY.objective}`,
  swap: "Swap targets and distractors (the objective changes sign).",
  loss: GLOSSARY.objective,
  guided: "Load one of the model organism's planted tasks with the right targets and a note on what to look at.",
  maxNodes: "Node budget: how many nodes the graph keeps (those with the largest estimated total effect).",
  maxEdges: "Edge budget: how many of the strongest edges the graph draws.",
  alpha: "α: how much of the node's write direction to add (α × unit write vector per token).",
  lens: "Logit lens: the residual stream at each layer read through the final LayerNorm and the unembedding, as if the model stopped there.",
  headGrid: `Per head, summed over its (query, key) pairs: direct effect (${GLOSSARY.direct_effect}) and the exact change of the objective when the head is zero-ablated at every position.`,
  pathPatching: "Path patching: the senders' effect on the objective only through the receivers' query/key/value inputs; senders take their value on the second (corrupted) prompt.",
  steer: "Steer generation with this node: add α × its write direction at its token (opens the generate & steer panel).",
  generate: "Continue the prompt greedily, without and with the interventions, side by side.",
  estimateLN: "Where the estimated total effect (the total column) is linearised. live (the default): the true gradient of the " +
    "loss (attribution patching): the final LayerNorm scale follows the node and SAE errors follow their input, as in a real " +
    "ablation, so it ranks nodes the way ablating them does (scripts/eval_attribution.py). frozen: the final LayerNorm scale " +
    "held constant and SAE errors fixed (TDB's convention). Both cost the same; direct effects are the same in both.",
  softmax: "AtP* softmax correction (total_effect_softmax): estimate each node's removal linearly up to the logits and recompute " +
    "the log-probability exactly, so that nodes a confident (saturated) prediction rests on are not ranked ≈ 0. " +
    "Cost: one more batched pass of about 33 rows per prompt.",
  softmaxOff: "Not available here: the server applies it to log-probability losses only, and the debugger explains a logit " +
    "difference, which is linear in the logits (no output softmax to correct).",
  exactTopN: `Exact ablation for the top N rows: zero-ablate each of the table's first N rows (most |total| first) for real and show ` +
    `the result in an exact column beside total. ${GLOSSARY.exact_effect} Cost: one more forward pass of N batch rows per ` +
    "prompt (50 rows ≈ 1.8 × a node table). 0: off.",
  graddropToggle: `Add a graddrop column. ${GLOSSARY.graddrop} Cost: one more batched pass of n_layers rows per prompt.`,
  measuresOff: "Not while tracing: it measures effects on the loss (the server refuses it with a trace).",
} as const;
