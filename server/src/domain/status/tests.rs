use super::*;
use chrono::Utc;

fn consultation(status: Status, staff_messaged_first: bool) -> Consultation {
    Consultation {
        id: "k1".into(),
        clinic_id: "c1".into(),
        provider_id: "dr".into(),
        patient_id: "pat".into(),
        status,
        scheduled_at: Utc::now(),
        waiting_since: None,
        staff_messaged_first,
        last_seq: 0,
        rev: 0,
    }
}

fn code(result: Result<Option<Status>, Refusal>) -> ErrorCode {
    result.unwrap_err().code
}

#[test]
fn the_happy_path_goes_gold_green_in_progress_ended() {
    let mut c = consultation(Status::Scheduled, false);
    for (role, action, expected) in [
        (
            Role::Provider,
            StatusAction::Open,
            Status::WaitingForPatient,
        ),
        (Role::Patient, StatusAction::Ready, Status::PatientReady),
        (Role::Provider, StatusAction::Enter, Status::InProgress),
        (Role::Provider, StatusAction::End, Status::Ended),
    ] {
        c.status = decide(&c, role, action).unwrap().unwrap();
        assert_eq!(c.status, expected);
    }
}

#[test]
fn a_patient_cannot_enter_before_ready_unless_staff_messaged_first() {
    let waiting = consultation(Status::WaitingForPatient, false);
    assert_eq!(
        code(decide(&waiting, Role::Patient, StatusAction::Enter)),
        ErrorCode::NotReady
    );
    let messaged = consultation(Status::WaitingForPatient, true);
    assert_eq!(
        decide(&messaged, Role::Patient, StatusAction::Enter).unwrap(),
        None,
        "entering after staff messaged first keeps the status gold"
    );
}

#[test]
fn the_provider_entering_starts_the_consultation_from_gold_or_green() {
    for from in [Status::WaitingForPatient, Status::PatientReady] {
        let c = consultation(from, true);
        assert_eq!(
            decide(&c, Role::Provider, StatusAction::Enter).unwrap(),
            Some(Status::InProgress)
        );
    }
}

#[test]
fn tapping_ready_twice_changes_nothing() {
    let c = consultation(Status::PatientReady, false);
    assert_eq!(
        decide(&c, Role::Patient, StatusAction::Ready).unwrap(),
        None
    );
}

#[test]
fn patients_may_not_open_end_or_cancel_and_staff_may_not_tap_ready() {
    let c = consultation(Status::InProgress, false);
    for action in [StatusAction::Open, StatusAction::End, StatusAction::Cancel] {
        assert_eq!(
            code(decide(&c, Role::Patient, action)),
            ErrorCode::Forbidden
        );
    }
    let waiting = consultation(Status::WaitingForPatient, false);
    assert_eq!(
        code(decide(&waiting, Role::Admin, StatusAction::Ready)),
        ErrorCode::Forbidden
    );
}

#[test]
fn disallowed_transitions_are_invalid() {
    let waiting = consultation(Status::WaitingForPatient, false);
    assert_eq!(
        code(decide(&waiting, Role::Provider, StatusAction::End)),
        ErrorCode::InvalidTransition
    );
    assert_eq!(
        code(decide(&waiting, Role::Provider, StatusAction::Open)),
        ErrorCode::InvalidTransition
    );
    let running = consultation(Status::InProgress, false);
    assert_eq!(
        code(decide(&running, Role::Patient, StatusAction::Ready)),
        ErrorCode::InvalidTransition
    );
}

#[test]
fn nothing_changes_a_finished_consultation() {
    for from in [Status::Ended, Status::Cancelled] {
        let c = consultation(from, false);
        for action in [
            StatusAction::Open,
            StatusAction::Ready,
            StatusAction::Enter,
            StatusAction::End,
            StatusAction::Cancel,
        ] {
            assert_eq!(
                code(decide(&c, Role::Admin, action)),
                ErrorCode::ConsultationClosed
            );
        }
    }
}

#[test]
fn staff_may_cancel_any_unfinished_consultation() {
    for from in [
        Status::Scheduled,
        Status::WaitingForPatient,
        Status::PatientReady,
        Status::InProgress,
    ] {
        assert_eq!(
            decide(
                &consultation(from, false),
                Role::Admin,
                StatusAction::Cancel
            )
            .unwrap(),
            Some(Status::Cancelled)
        );
    }
}
