// Hardware targets: added below.
