"""A small word-level language model in the style of pytorch/examples' word_language_model (main.py and
model.py), written for PyTorch.

test/test_ported_scripts.py runs it unchanged under torch and, with only its import lines rewritten, under tinyjit.
The corpus is synthetic (a seeded numpy random walk over a small vocabulary, so both frameworks see the same
words) and the sizes are tiny, so a run takes seconds. It uses what the example uses: an RNNModel with
nn.Embedding, a multi-layer nn.LSTM / nn.GRU / nn.RNN with dropout between layers, tied decoder weights,
init_weights with nn.init.uniform_ / zeros_, batchify with narrow / view / t().contiguous(), get_batch slicing,
repackage_hidden with detach, clip_grad_norm_, the manual SGD update p.data.add_(p.grad, alpha=-lr), learning
rate annealing and math.exp(loss) perplexity.
"""
import argparse
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super(RNNModel, self).__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ['LSTM', 'GRU']:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            nonlinearity = {'RNN_TANH': 'tanh', 'RNN_RELU': 'relu'}[rnn_type]
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

        if tie_weights:
            if nhid != ninp:
                raise ValueError('When using the tied flag, nhid must be equal to emsize')
            self.decoder.weight = self.encoder.weight

        self.init_weights()

        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == 'LSTM':
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))
        else:
            return weight.new_zeros(self.nlayers, bsz, self.nhid)


def make_corpus(ntokens, length, seed):
    """Token ids of a random walk: each word is followed by one of three likely successors."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, ntokens, size=(ntokens, 3))
    ids = [0]
    for _ in range(length - 1):
        ids.append(successors[ids[-1], rng.integers(0, 3)])
    return torch.tensor(ids, dtype=torch.long)


def batchify(data, bsz, device):
    # Work out how cleanly we can divide the dataset into bsz parts.
    nbatch = data.size(0) // bsz
    # Trim off any extra elements that wouldn't cleanly fit (remainders).
    data = data.narrow(0, 0, nbatch * bsz)
    # Evenly divide the data across the bsz batches.
    data = data.view(bsz, -1).t().contiguous()
    return data.to(device)


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    else:
        return tuple(repackage_hidden(v) for v in h)


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i:i + seq_len]
    target = source[i + 1:i + 1 + seq_len].view(-1)
    return data, target


def evaluate(model, data_source, args, ntokens, criterion):
    # Turn on evaluation mode which disables dropout.
    model.eval()
    total_loss = 0.
    hidden = model.init_hidden(args.eval_batch_size)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, args.bptt):
            data, targets = get_batch(data_source, i, args.bptt)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * criterion(output, targets).item()
    return total_loss / (len(data_source) - 1)


def train(model, train_data, args, ntokens, criterion, lr, epoch):
    # Turn on training mode which enables dropout.
    model.train()
    total_loss = 0.
    hidden = model.init_hidden(args.batch_size)
    for batch, i in enumerate(range(0, train_data.size(0) - 1, args.bptt)):
        data, targets = get_batch(train_data, i, args.bptt)
        # Starting each batch, we detach the hidden state from how it was previously produced.
        # If we didn't, the model would try backpropagating all the way to start of the dataset.
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()

        # `clip_grad_norm` helps prevent the exploding gradient problem in RNNs / LSTMs.
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)

        total_loss += loss.item()

        if batch % args.log_interval == 0 and batch > 0:
            cur_loss = total_loss / args.log_interval
            print('| epoch {:3d} | {:5d}/{:5d} batches | lr {:02.2f} | loss {:5.2f} | ppl {:8.2f}'.format(
                epoch, batch, len(train_data) // args.bptt, lr, cur_loss, math.exp(cur_loss)))
            total_loss = 0


def main(argv=None):
    parser = argparse.ArgumentParser(description='PyTorch RNN/LSTM/GRU Language Model (synthetic corpus)')
    parser.add_argument('--model', type=str, default='LSTM',
                        help='type of network (RNN_TANH, RNN_RELU, LSTM, GRU)')
    parser.add_argument('--ntokens', type=int, default=24, help='size of the vocabulary')
    parser.add_argument('--emsize', type=int, default=16, help='size of word embeddings')
    parser.add_argument('--nhid', type=int, default=16, help='number of hidden units per layer')
    parser.add_argument('--nlayers', type=int, default=2, help='number of layers')
    parser.add_argument('--lr', type=float, default=20, help='initial learning rate')
    parser.add_argument('--clip', type=float, default=0.25, help='gradient clipping')
    parser.add_argument('--epochs', type=int, default=2, help='upper epoch limit')
    parser.add_argument('--batch_size', type=int, default=4, metavar='N', help='batch size')
    parser.add_argument('--bptt', type=int, default=6, help='sequence length')
    parser.add_argument('--dropout', type=float, default=0.2, help='dropout applied to layers (0 = no dropout)')
    parser.add_argument('--tied', action='store_true', help='tie the word embedding and softmax weights')
    parser.add_argument('--seed', type=int, default=1111, help='random seed')
    parser.add_argument('--train-length', type=int, default=200, help='tokens in the training corpus')
    parser.add_argument('--log-interval', type=int, default=2, metavar='N', help='report interval')
    args = parser.parse_args(argv)
    args.eval_batch_size = 2

    torch.manual_seed(args.seed)
    device = torch.device("cpu")

    train_data = batchify(make_corpus(args.ntokens, args.train_length, 0), args.batch_size, device)
    val_data = batchify(make_corpus(args.ntokens, args.train_length // 4, 1), args.eval_batch_size, device)

    model = RNNModel(args.model, args.ntokens, args.emsize, args.nhid, args.nlayers, args.dropout,
                     args.tied).to(device)
    criterion = nn.NLLLoss()

    lr = args.lr
    best_val_loss = None
    val_losses = []
    for epoch in range(1, args.epochs + 1):
        train(model, train_data, args, args.ntokens, criterion, lr, epoch)
        val_loss = evaluate(model, val_data, args, args.ntokens, criterion)
        val_losses.append(val_loss)
        print('-' * 89)
        print('| end of epoch {:3d} | valid loss {:5.2f} | valid ppl {:8.2f}'.format(
            epoch, val_loss, math.exp(val_loss)))
        print('-' * 89)
        # Save the model if the validation loss is the best we've seen so far.
        if not best_val_loss or val_loss < best_val_loss:
            best_val_loss = val_loss
        else:
            # Anneal the learning rate if no improvement has been seen in the validation dataset.
            lr /= 4.0
    return model, val_losses


if __name__ == '__main__':
    main()
