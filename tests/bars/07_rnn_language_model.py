def check(m):
    # smoke run (100 steps each): both models must clearly beat the context-free unigram model,
    # and the gradient-through-time demo must show vanishing and exploding gradients; kit's RNN cell
    # equals a hand-written loop and kit's LSTM step equals torch.nn.LSTM
    return (m["val_loss_lstm"] < m["unigram_val_loss"] - 0.5
            and m["val_loss_rnn"] < m["unigram_val_loss"] - 0.4
            and abs(m["perplexity"] - 2.718281828 ** m["val_loss"]) < 1e-6 * m["perplexity"]
            and m["grad_ratio_scale_0.5"] < 1e-6 and m["grad_ratio_scale_3"] > 1e2
            and m["rnn_vs_hand"] < 1e-12 and m["lstm_vs_torch"] < 1e-12)
