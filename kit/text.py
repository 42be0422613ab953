"""Text helpers of the language lessons (07 RNN/LSTM, 08 Transformer, 09 GPT, 10 BERT), in one namespace.

Each idea lives in its own module, at its layer; this module only gathers them for the notebooks:

* tokenizers — :class:`CharVocab`, :class:`WordVocab`, :func:`words` (:mod:`kit.data.tokenizers`);
* batches — :func:`pad_batch`, :func:`split_ids`, :func:`char_corpus`, :func:`lm_batches`,
  :func:`stream_batches` (:mod:`kit.data.batches`);
* sampling — :func:`filter_logits` (top-k / top-p), :func:`sample_next`, :func:`generate`, and the
  language-model protocol :func:`is_recurrent` / :func:`logits_of` (:mod:`kit.models.sampling`);
* training — :func:`train_lm` (a configuration of :func:`kit.train.fit`) and :class:`LMRun`
  (:mod:`kit.train.lm`);
* numbers — :func:`evaluate_lm`, :func:`perplexity`, :func:`unigram_entropy` (:mod:`kit.train.lm_eval`).
"""
from kit.data.batches import char_corpus, lm_batches, pad_batch, split_ids, stream_batches
from kit.data.tokenizers import CharVocab, WordVocab, words
from kit.models.sampling import filter_logits, generate, is_recurrent, logits_of, sample_next
from kit.train.lm import LMRun, train_lm
from kit.train.lm_eval import evaluate_lm, perplexity, unigram_entropy

__all__ = ["CharVocab", "WordVocab", "words", "pad_batch", "split_ids", "char_corpus", "lm_batches", "stream_batches",
           "evaluate_lm", "train_lm", "LMRun", "filter_logits", "sample_next", "generate", "perplexity",
           "unigram_entropy", "is_recurrent", "logits_of"]
