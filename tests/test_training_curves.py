"""reports/evaluate/training_curves.png is read on a screen: a grid, not one strip of panels."""

from PIL import Image

from ganlab.render.plots import plot_curves


def _history(tmp_path, evals: bool):
    history = tmp_path / "history.csv"
    history.write_text(
        "kimg,epoch,loss_d,loss_g,real_score,fake_score,augment_p,r_t\n"
        + "".join(f"{k},{k / 10},1.{k},0.{k},0.6,0.4,1,0.2\n" for k in range(2, 12, 2))
    )
    eval_csv = tmp_path / "eval_history.csv"
    if evals:
        eval_csv.write_text(
            "kimg,swd_ratio,fd_ratio,ndb,ndb_floor,recall,precision,nn_ratio\n"
            "5,3.0,20.0,0.5,0.03,0.0,0.0,1.1\n10,2.5,16.0,0.4,0.03,0.04,0.0,1.08\n"
        )
    return history, eval_csv


def test_the_six_curves_fit_a_screen_as_two_rows_of_three(tmp_path):
    history, eval_csv = _history(tmp_path, evals=True)
    plot_curves(history, eval_csv, tmp_path / "curves.png")
    width, height = Image.open(tmp_path / "curves.png").size
    assert width <= 1600 and height <= 1000, (width, height)  # one strip of six was 2700 x 360
    assert 1.4 <= width / height <= 2.0, (width, height)  # two rows of three panels


def test_without_evaluations_the_training_curves_are_one_row(tmp_path):
    history, eval_csv = _history(tmp_path, evals=False)
    plot_curves(history, eval_csv, tmp_path / "curves.png")
    width, height = Image.open(tmp_path / "curves.png").size
    assert width <= 1600 and 2.8 <= width / height <= 3.6, (width, height)
