//! The consultation status machine.
//!
//! `scheduled → waiting_for_patient (gold) → patient_ready (green) →
//! in_progress → ended`, plus `cancelled` from any state that has not
//! finished. A patient may enter before tapping ready only when staff
//! messaged first, and then the status stays `waiting_for_patient` until the
//! provider enters.

use crate::domain::Consultation;
use consult_protocol::{ConsultationStatus as Status, ErrorCode, Role};

/// A command that may change a consultation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAction {
    /// Staff open a scheduled consultation.
    Open,
    /// The patient taps "I'm Ready for My Appointment".
    Ready,
    /// A participant enters the consultation.
    Enter,
    /// Staff end it.
    End,
    /// Staff cancel it.
    Cancel,
}

impl StatusAction {
    /// The audit-log action name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Ready => "ready",
            Self::Enter => "enter",
            Self::End => "end",
            Self::Cancel => "cancel",
        }
    }
}

/// Why an action was refused, with the wire code to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code.
    pub code: ErrorCode,
    /// The explanation.
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Decides the outcome of `action` by someone with `role`.
///
/// Returns `Ok(Some(status))` for a change, `Ok(None)` when the action is
/// allowed but changes nothing (tapping ready twice, a patient entering
/// after staff messaged first).
///
/// # Errors
///
/// A [`Refusal`] with `forbidden`, `invalid_transition`, `not_ready` or
/// `consultation_closed`.
pub fn decide(
    consultation: &Consultation,
    role: Role,
    action: StatusAction,
) -> Result<Option<Status>, Refusal> {
    let from = consultation.status;
    if from.is_terminal() {
        return Err(refuse(
            ErrorCode::ConsultationClosed,
            format!("the consultation is {from}"),
        ));
    }
    let staff = role.is_staff();
    match (action, staff) {
        (StatusAction::Open | StatusAction::End | StatusAction::Cancel, false) => Err(refuse(
            ErrorCode::Forbidden,
            format!("a patient may not {}", action.as_str()),
        )),
        (StatusAction::Ready, true) => Err(refuse(
            ErrorCode::Forbidden,
            "only the patient may say it is ready",
        )),
        (StatusAction::Open, true) => match from {
            Status::Scheduled => Ok(Some(Status::WaitingForPatient)),
            _ => Err(invalid(from, Status::WaitingForPatient)),
        },
        (StatusAction::Ready, false) => match from {
            Status::Scheduled | Status::WaitingForPatient => Ok(Some(Status::PatientReady)),
            Status::PatientReady => Ok(None),
            _ => Err(invalid(from, Status::PatientReady)),
        },
        (StatusAction::Enter, true) => match from {
            Status::InProgress => Ok(None),
            _ => Ok(Some(Status::InProgress)),
        },
        (StatusAction::Enter, false) => match from {
            Status::PatientReady | Status::InProgress => Ok(None),
            Status::Scheduled | Status::WaitingForPatient if consultation.staff_messaged_first => {
                Ok(None)
            }
            _ => Err(refuse(
                ErrorCode::NotReady,
                "tap \"I'm Ready for My Appointment\" before entering",
            )),
        },
        (StatusAction::End, true) => match from {
            Status::InProgress => Ok(Some(Status::Ended)),
            _ => Err(invalid(from, Status::Ended)),
        },
        (StatusAction::Cancel, true) => Ok(Some(Status::Cancelled)),
    }
}

fn invalid(from: Status, to: Status) -> Refusal {
    refuse(
        ErrorCode::InvalidTransition,
        format!("cannot go from {from} to {to}"),
    )
}

#[cfg(test)]
mod tests;
