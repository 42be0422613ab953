"""Every model of the lessons: a config dataclass and plain modules each, nanoGPT's names for sizes
(``n_layer``, ``n_head``, ``n_embd``). Models import no training code: ``kit.train.fit`` trains them all.

* lessons 01–02: :mod:`linear`, :mod:`logistic` (functions: the lessons derive the gradients);
* :class:`MLP` (03, 05, 11–13), :class:`CNN` (04, 06);
* :class:`CharRNN` with kit's own :class:`RNNCell` (07); :class:`TransformerClassifier` (08);
* :class:`GPT` (09; :mod:`gpt` also has presets, the KV cache, FLOPs and MFU); :class:`Bert`,
  :class:`BertClassifier`, :class:`SentenceEncoder` (10);
* :class:`MatrixFactorization`, :class:`BPRMF` (14);
* :mod:`sampling`: generation for any language model; :func:`n_params`.
"""
from kit.models import gpt, linear, logistic, sampling
from kit.models.base import n_params
from kit.models.bert import Bert, BertClassifier, BertConfig, SentenceEncoder
from kit.models.cnn import CNN, CNNConfig
from kit.models.gpt import GPT, GPTConfig
from kit.models.mf import BPRMF, MatrixFactorization
from kit.models.mlp import MLP, MLPConfig, l1_penalty
from kit.models.rnn import CharRNN, RNNCell, RNNConfig
from kit.models.transformer import MultiHeadAttention, TransformerClassifier, TransformerConfig

__all__ = ["BPRMF", "Bert", "BertClassifier", "BertConfig", "CNN", "CNNConfig", "CharRNN", "GPT", "GPTConfig", "MLP",
           "MLPConfig", "MatrixFactorization", "MultiHeadAttention", "RNNCell", "RNNConfig", "SentenceEncoder",
           "TransformerClassifier", "TransformerConfig", "gpt", "l1_penalty", "linear", "logistic", "n_params",
           "sampling"]
