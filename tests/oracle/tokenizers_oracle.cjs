// Writes tokenizer.json files with the Hugging Face `tokenizers` library itself (the npm binding of
// the Rust crate transformers uses) and the ids it gives for a set of texts, for
// tests/tokenizer_oracle_test.cc to compare llmq's tokenizer with.
//
//   node tokenizers_oracle.cjs <out-dir> <train-text> <eval-text> [<eval-text> ...]
//
// Vocabularies are trained here by the library on <train-text>; each flavour is configured the way
// transformers' converters configure that model family, loaded by the library and saved again, so
// every file is exactly what the library writes. Output: <out-dir>/<flavour>/tokenizer.json (+
// tokenizer_config.json) and <out-dir>/expected.json {flavour: [{text, ids, ids_with_special}]}.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer, BPE, byteLevelAlphabet, byteLevelPreTokenizer, metaspacePreTokenizer } = require('tokenizers');

const [outDir, trainText, ...evalTexts] = process.argv.slice(2);
if (!outDir || !trainText || evalTexts.length === 0) {
  console.error('usage: node tokenizers_oracle.cjs <out-dir> <train-text> <eval-text> [<eval-text> ...]');
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });

// Trains a BPE with the given pre-tokenizer; returns {vocab, merges} as the library saves them.
function train(preTokenizer, name) {
  const tok = new Tokenizer(BPE.empty());
  tok.setPreTokenizer(preTokenizer);
  tok.train([trainText]);
  const file = path.join(outDir, `trained-${name}.json`);
  tok.save(file);
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  fs.unlinkSync(file);
  return { vocab: j.model.vocab, merges: j.model.merges };
}

const GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function bpeModel(vocab, merges, extra) {
  return Object.assign({ type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '',
                         end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: false,
                         vocab, merges }, extra || {});
}
function added(id, content, special, flags) {
  return Object.assign({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: !special,
                         special }, flags || {});
}
function template(prefix, suffix, specials) {
  const seq = (t) => [...prefix.map((p) => ({ SpecialToken: { id: p, type_id: t } })), { Sequence: { id: t ? 'B' : 'A', type_id: t } },
                      ...suffix.map((p) => ({ SpecialToken: { id: p, type_id: t } }))];
  const special_tokens = {};
  for (const [tok, id] of specials) special_tokens[tok] = { id: tok, ids: [id], tokens: [tok] };
  return { type: 'TemplateProcessing', single: seq(0), pair: [...seq(0), ...seq(1)], special_tokens };
}
const byteLevelPre = (add_prefix_space, use_regex) => ({ type: 'ByteLevel', add_prefix_space, trim_offsets: true, use_regex });
const byteLevelPost = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true };

// Appends tokens at the end of a vocabulary (special tokens after the BPE ones).
function withTokens(vocab, tokens) {
  const v = Object.assign({}, vocab);
  let next = Math.max(...Object.values(v)) + 1;
  const ids = tokens.map((t) => (t in v ? v[t] : (v[t] = next++)));
  return { vocab: v, ids };
}

// Byte-level vocabularies hold all 256 byte symbols, as GPT-2's does (the trainer only adds the
// bytes it saw: those are appended). RoBERTa's below keeps the trained vocabulary alone, so bytes
// it never saw have no token and are dropped (no unk_token).
const blTrained = train(byteLevelPreTokenizer(false, true), 'bytelevel');
const bl = { vocab: withTokens(blTrained.vocab, byteLevelAlphabet()).vocab, merges: blTrained.merges };
const flavours = {};
{  // GPT-2: <|endoftext|> is BOS, EOS and UNK; no BOS is added. Plus two user-added (non-special)
   // tokens to exercise the flags: a single_word one and an rstrip one.
  const { vocab, ids: [eot, lily, arrow] } = withTokens(bl.vocab, ['<|endoftext|>', 'Lily', '->']);
  flavours.gpt2 = {
    json: { version: '1.0', truncation: null, padding: null,
            added_tokens: [added(eot, '<|endoftext|>', true), added(lily, 'Lily', false, { single_word: true }),
                           added(arrow, '->', false, { rstrip: true })],
            normalizer: null, pre_tokenizer: byteLevelPre(false, true), post_processor: byteLevelPost,
            decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
            model: bpeModel(vocab, bl.merges) },
    config: { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' },
  };
}
{  // OPT: GPT-2's BPE with <s> <pad> </s> <unk> at 0..3, and </s> prepended (add_bos_token).
  const vocab = { '<s>': 0, '<pad>': 1, '</s>': 2, '<unk>': 3 };
  for (const [t, id] of Object.entries(bl.vocab)) vocab[t] = id + 4;
  flavours.opt = {
    json: { version: '1.0', truncation: null, padding: null,
            added_tokens: [added(0, '<s>', true), added(1, '<pad>', true), added(2, '</s>', true), added(3, '<unk>', true)],
            normalizer: null, pre_tokenizer: byteLevelPre(false, true), post_processor: template(['</s>'], [], [['</s>', 2]]),
            decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
            model: bpeModel(vocab, bl.merges) },
    config: { bos_token: '</s>', eos_token: '</s>', unk_token: '</s>', pad_token: '<pad>', add_bos_token: true },
  };
}
{  // Qwen2: NFC, its split regex then byte-level without regex, chat tokens added; no BOS.
  const { vocab, ids } = withTokens(bl.vocab, ['<|endoftext|>', '<|im_start|>', '<|im_end|>']);
  flavours.qwen2 = {
    json: { version: '1.0', truncation: null, padding: null,
            added_tokens: [added(ids[0], '<|endoftext|>', true), added(ids[1], '<|im_start|>', true), added(ids[2], '<|im_end|>', true)],
            normalizer: { type: 'NFC' },
            pre_tokenizer: { type: 'Sequence', pretokenizers: [
              { type: 'Split', pattern: { Regex: QWEN2_REGEX }, behavior: 'Isolated', invert: false },
              byteLevelPre(false, false)] },
            post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
            decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
            model: bpeModel(vocab, bl.merges, { ignore_merges: false }) },
    config: { eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', bos_token: null },
  };
}
{  // Llama-3: its split regex, ignore_merges, <|begin_of_text|> prepended by a template after ByteLevel.
  const { vocab, ids } = withTokens(bl.vocab, ['<|begin_of_text|>', '<|end_of_text|>']);
  flavours.llama3 = {
    json: { version: '1.0', truncation: null, padding: null,
            added_tokens: [added(ids[0], '<|begin_of_text|>', true), added(ids[1], '<|end_of_text|>', true)],
            normalizer: null,
            pre_tokenizer: { type: 'Sequence', pretokenizers: [
              { type: 'Split', pattern: { Regex: LLAMA3_REGEX }, behavior: 'Isolated', invert: false },
              byteLevelPre(false, false)] },
            post_processor: { type: 'Sequence', processors: [
              { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
              template(['<|begin_of_text|>'], [], [['<|begin_of_text|>', ids[0]]])] },
            decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
            model: bpeModel(vocab, bl.merges, { ignore_merges: true }) },
    config: { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' },
  };
}
{  // GPT-2 BPE with RoBERTa's post-processor (<s> ... </s>) and ByteLevel add_prefix_space.
  const vocab = { '<s>': 0, '<pad>': 1, '</s>': 2, '<unk>': 3 };
  for (const [t, id] of Object.entries(blTrained.vocab)) vocab[t] = id + 4;
  const mask = Math.max(...Object.values(vocab)) + 1;
  vocab['<mask>'] = mask;
  flavours.roberta = {  // RoBERTa's <mask> takes the whitespace on its left (lstrip)
    json: { version: '1.0', truncation: null, padding: null,
            added_tokens: [added(0, '<s>', true), added(1, '<pad>', true), added(2, '</s>', true), added(3, '<unk>', true),
                           added(mask, '<mask>', true, { lstrip: true })],
            normalizer: null, pre_tokenizer: byteLevelPre(true, true),
            post_processor: { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: true },
            decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
            model: bpeModel(vocab, blTrained.merges) },
    config: { bos_token: '<s>', eos_token: '</s>' },
  };
}

// SentencePiece-style BPE (Llama-2 / Mistral as transformers converts them): <unk> <s> </s>,
// the 256 byte-fallback tokens, then the trained pieces.
const sp = train(metaspacePreTokenizer('\u2581', 'always', true), 'metaspace');
const spVocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
for (let b = 0; b < 256; ++b) spVocab['<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>'] = 3 + b;
{
  let next = 259;
  for (const [t] of Object.entries(sp.vocab).sort((a, b) => a[1] - b[1])) if (!(t in spVocab)) spVocab[t] = next++;
}
const spAdded = [added(0, '<unk>', true), added(1, '<s>', true), added(2, '</s>', true)];
const spModel = bpeModel(spVocab, sp.merges, { unk_token: '<unk>', fuse_unk: true, byte_fallback: true,
                                              continuing_subword_prefix: null, end_of_word_suffix: null });
const spDecoder = { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
                                                 { type: 'ByteFallback' }, { type: 'Fuse' },
                                                 { type: 'Strip', content: ' ', start: 1, stop: 0 }] };
flavours.llama2_legacy = {  // normalizer Prepend + Replace, no pre-tokenizer (transformers < 4.40 / legacy)
  json: { version: '1.0', truncation: null, padding: null, added_tokens: spAdded,
          normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' },
                                                         { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
          pre_tokenizer: null, post_processor: template(['<s>'], [], [['<s>', 1]]), decoder: spDecoder, model: spModel },
  config: { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' },
};
flavours.llama2_metaspace = {  // Metaspace pre-tokenizer, prepend_scheme first, no split (legacy = false)
  json: { version: '1.0', truncation: null, padding: null, added_tokens: spAdded, normalizer: null,
          pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false },
          post_processor: template(['<s>'], [], [['<s>', 1]]),
          decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false }, model: spModel },
  config: { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' },
};

// Texts: each evaluation text whole, the first 4 KB of the first, and adversarial strings.
const evalWhole = evalTexts.map((f) => fs.readFileSync(f, 'utf8'));
const texts = [
  ...evalWhole, evalWhole[0].slice(0, 4096), '', ' ', '  ', '\n', '\n\n\n', '\t\tx', 'Hello world', ' Hello world',
  'Hello  world   ', "I'm sure they'll've DON'T", '12345 678 9', 'x1y22z333', 'café naïve résumé', 'Ünïcödé',
  '日本語のテキスト', '中文，标点！', '😀 emoji 🎉👍🏽', 'a\u200bb', '\u00a0nbsp\u3000ideographic',
  'tabs\tand\r\nwindows\r\nlines', ' '.repeat(40) + 'x' + ' '.repeat(17), '\n'.repeat(9) + 'y',
  '<s>', 'a <s> b </s> c', '<s>hello', 'x<|endoftext|>y', '<|endoftext|><|endoftext|>', '<|im_start|>user\nhi<|im_end|>',
  '<|begin_of_text|>Once upon a time', '<unk> <pad>', 'Once upon a time, there was a little girl named Lily.',
  '$$$ %%% ^^^ &&&', 'Lily met Lilyanne and LilyLily, Lily_x (Lily) Lily',
  'a -> b ->   c->d', 'The <mask> sat.  <mask>x <mask>', '\u00a0<mask>\t<mask>', '--- ... !!! ???', 'mixed123abc!@#\u00e9\u00e8', '\u0301combining', 'Ǆ ǅ ǆ ﬁ',
];
const expected = {};
(async () => {
  for (const [name, f] of Object.entries(flavours)) {
    const dir = path.join(outDir, name);
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'tokenizer.json');
    Tokenizer.fromString(JSON.stringify(f.json)).save(file, true);  // as the library writes it
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(f.config, null, 2));
    const tok = Tokenizer.fromFile(file);
    expected[name] = [];
    for (const text of texts) {
      const plain = await tok.encode(text, null, { addSpecialTokens: false });
      const special = await tok.encode(text, null, { addSpecialTokens: true });
      expected[name].push({ text, ids: plain.getIds(), ids_with_special: special.getIds() });
    }
  }
  fs.writeFileSync(path.join(outDir, 'expected.json'), JSON.stringify(expected));
  console.log(`wrote ${Object.keys(flavours).length} tokenizer.json flavours x ${texts.length} texts to ${outDir}`);
})().catch((e) => { console.error(e); process.exit(1); });
